"""JPEG twice: a differentiable proxy for training, the real codec for use.

Both code each channel as its own grayscale plane with a flat table of step
`qstep` by default, so they can be compared one to one.
"""
from sandwich.jpeg.proxy import proxy_code, proxy_roundtrip, ste_round
from sandwich.jpeg.real import decode, encode, qtable_step, real_roundtrip

__all__ = ["proxy_code", "proxy_roundtrip", "ste_round", "encode", "decode",
           "qtable_step", "real_roundtrip"]
