"""The web process (``gunicorn "app:create_app()"``): webhooks, the API, the dashboard and metrics; and the Label
Studio ML backend (``gunicorn "web.ml_backend:create_app()"``). It records and enqueues; it never calls a platform
inside a request and never imports TensorFlow: the worker (worker/) does the work."""
