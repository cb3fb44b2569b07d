"""zwz.distill: Region-to-Image Distillation (paper Alg. 2), the benchmark format and the ZoomWorld generator.

    zwz distill --images pool/ --annotations pool/items.jsonl --teacher URL=MODEL --student URL=MODEL --out runs/r2i

Modules: ``cli`` (the command), ``config`` (settings, paper defaults), ``pipeline`` (local backend, journals,
resume), ``ray_backend`` (Ray Data), ``stages`` (one function per stage), ``records`` (the typed records),
``teachers`` (async OpenAI-compatible clients, retries, call cache), ``prompts`` (App. 10 prompts, strict
parsers), ``proposals`` / ``box_proposer`` (native boxes, SAM3), ``imaging`` / ``grounding`` (zoom, red box,
Q'), ``consensus``, ``output`` / ``training_data`` (parquet and benchmark writers; the training-data
contract), ``report`` (funnel), ``scripted_teacher`` (a stand-in teacher for tests and benchmarks),
``benchmark`` (ZoomBench items), ``zoomworld`` (procedural benchmark).
"""
