"""The deployed codec: what runs a trained sandwich on real files, without Beam or the trainer.

- `codec.api`: one image in, one sandwich JPEG out, and back (`load`,
  `Codec.compress`, `Codec.decompress`);
- `codec.exported`: an export dir loaded and run on whole images, tile by tile;
- `codec.bottleneck_format`: the file (a plain JPEG with a header in a comment);
- `codec.rate_control`: per image, the best file for a target among the
  models, their identities, plain JPEG and jpegli;
- `codec.tiling`: images of any size through the processors in bounded memory;
- `codec.shipped`: the trained models that ship inside the package.

The layers: `sandwich` (the training-time library: networks, the JPEG
proxy, scenarios) below, `codec` (this), and the jobs (`pipelines`, Beam;
`trainer`) above; `codec` imports `sandwich`, and nothing imports upward.
"""
from codec.api import Codec, Source, load

__all__ = ["Codec", "Source", "load"]
