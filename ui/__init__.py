"""zwz.ui: the Gradio dual-view UI, a client of the zwz server's HTTP API (``zwz ui``).

``client`` talks to the server, ``views`` runs the single / regional / agent / attention_zoom views and the
heatmap concurrently, ``examples`` offers ZoomWorld and benchmark items, ``form`` and ``render`` turn the page
into a query and results into text, ``app`` is the Gradio Blocks, ``cli`` is ``zwz ui`` (its demo server is
started by ``zwz.serve_process``). Gradio is imported only by ``app`` (``pip install 'zwz[ui]'``).
"""
