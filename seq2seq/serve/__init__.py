"""``seq2seq-serve``: a checkpoint behind an HTTP API and a web page (the ``serve`` extra).

``batching.py`` gathers concurrent requests into one model call, ``model.py`` runs a checkpoint's
predictor for them, ``schemas.py`` holds the request and response models, ``app.py`` the routes,
and ``static/`` the page served at ``/``.
"""
