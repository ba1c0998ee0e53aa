#!/usr/bin/env python3
"""Reads the generation parameters of an image the way third-party tools do: with sd-parsers
(an independent reader of AUTOMATIC1111 / ComfyUI / InvokeAI metadata), printing what it found
as JSON: `read_infotext.py IMAGE`. Used by tests/cli.rs to check that studioize's PNG
`parameters` chunk follows A1111's infotext layout. Pinned: sd-parsers 0.6, pillow 13.0.0."""
import json
import sys
from importlib.metadata import version

from sd_parsers import ParserManager

assert version("sd-parsers") == "0.6", version("sd-parsers")


def main(path):
    info = ParserManager().parse(path)
    if info is None:
        print(json.dumps(None))
        return 1
    s = info.samplers[0]
    out = {
        "generator": str(info.generator.name),
        "sampler": s.name,
        "parameters": s.parameters,
        "prompt": " ".join(p.value for p in s.prompts),
        "negative_prompt": " ".join(p.value for p in s.negative_prompts),
        "model": s.model.name if s.model else None,
        "metadata": {str(k): str(v) for k, v in info.metadata.items()},
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
