"""zwz: serve Zooming-without-Zooming vision-language models."""
__version__ = "0.1.0"
