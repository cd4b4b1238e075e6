# One image, three commands: the web process (default), the worker and the Label Studio ML backend (optional).
#   docker build -t prelabel .
#   docker run -p 8000:8000 -v prelabel:/app/instance --env-file .env prelabel
#   docker run -v prelabel:/app/instance --env-file .env prelabel huey_consumer worker.jobs.huey -w 1
#   docker run -p 9090:9090 -v prelabel:/app/instance --env-file .env prelabel \
#       gunicorn -c gunicorn.conf.py -b 0.0.0.0:9090 -w 1 "web.ml_backend:create_app()"
# Web and worker must share INSTANCE_PATH (SQLite database, queue file, models) or use DATABASE_URL/QUEUE_URL.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=3 INSTANCE_PATH=/app/instance
WORKDIR /app
# the same install steps as .ci/run, requirements first so code changes reuse the layer
COPY requirements.txt requirements-bert.txt requirements-bert-nodeps.txt ./
RUN pip install --upgrade pip && pip install -r requirements.txt -r requirements-bert.txt \
    && pip install --no-deps -r requirements-bert-nodeps.txt
COPY . .
RUN useradd --create-home prelabel && mkdir -p /app/instance && chown prelabel /app/instance
USER prelabel
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"]
