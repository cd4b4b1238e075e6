# One image, three commands: the web process (default), the worker and the Label Studio ML backend (optional).
#   docker build -t prelabel .
#   docker run -p 8000:8000 -v prelabel:/app/instance --env-file .env prelabel
#   docker run -v prelabel:/app/instance --env-file .env prelabel prelabel worker
#   docker run -p 9090:9090 -v prelabel:/app/instance --env-file .env prelabel prelabel ml-backend --bind 0.0.0.0:9090
# Web and worker must share INSTANCE_PATH (SQLite database, queue file, models) or use DATABASE_URL/QUEUE_URL.
# Inside a container the web process listens on all interfaces (BIND); publish the port only with API_TOKEN,
# WEBHOOK_* and ADMIN_TOKEN set (PRELABEL_ENV=production refuses to start without them).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=3 INSTANCE_PATH=/app/instance BIND=0.0.0.0:8000
WORKDIR /src
# the pinned dependencies first, so a code change reuses this layer (the same steps as .ci/run)
COPY requirements.txt requirements-bert.txt requirements-bert-nodeps.txt requirements-test.txt ./
RUN pip install --upgrade pip && pip install -r requirements.txt -r requirements-bert.txt \
    && pip install --no-deps -r requirements-bert-nodeps.txt
# the product itself, as a package (the `prelabel` command); .dockerignore keeps tests, benchmarks and tools out
COPY . .
RUN pip install --no-deps . && cd / && rm -rf /src \
    && useradd --create-home prelabel && mkdir -p /app/instance && chown prelabel /app/instance
WORKDIR /app
USER prelabel
EXPOSE 8000
CMD ["prelabel", "web"]
