"""JPEG twice: a differentiable proxy for training, the real codec for use.

Both code YCbCr with 4:2:0 chroma by default (`tables.JpegMode`) and take a
flat step or quantisation tables, so they can be compared one to one. The
proxy with the rate model's bit estimate, `proxy_roundtrip`, is in
`sandwich.rate`, the layer above: the rate model is calibrated on the proxy.

The real codec and the tables need no TensorFlow: `sandwich.jpeg.real` and
`sandwich.jpeg.tables` import without it, and the proxy's names below are
loaded only when first used.
"""
from sandwich.jpeg.real import decode, encode, real_roundtrip
from sandwich.jpeg.tables import DEFAULT_MODE, JpegMode

_PROXY = ("proxy_code", "ste_round")

__all__ = [*_PROXY, "encode", "decode", "real_roundtrip", "JpegMode", "DEFAULT_MODE"]


def __getattr__(name):
    if name in _PROXY:
        from sandwich.jpeg import proxy

        return getattr(proxy, name)
    raise AttributeError(f"module 'sandwich.jpeg' has no attribute {name!r}")
