# One image for the web server and the Celery workers; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBUG=false \
    STATIC_ROOT=/app/staticfiles \
    VAR_DIR=/data/var \
    PRIVATE_STORAGE_ROOT=/data/private \
    PORT=8000
# gunicorn's access log names the path only: a query string or a referrer can carry a patient identifier (a search by
# patient in the REST or FHIR API, the case list's search).
ENV GUNICORN_CMD_ARGS="--access-logformat='%(h)s %(t)s \"%(m)s %(U)s %(H)s\" %(s)s %(b)s %(M)sms'"

WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin mpox

# Dependencies first, so code changes do not reinstall them. torch and torchvision come from PyTorch's CPU-only
# index (the PyPI wheels carry CUDA, gigabytes that a CPU-only clinic server never uses); everything else is
# installed exactly as pinned in pyproject.toml.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
    > /tmp/requirements.txt
RUN grep -E '^(torch|torchvision)==' /tmp/requirements.txt > /tmp/torch.txt \
    && pip install --index-url https://download.pytorch.org/whl/cpu -r /tmp/torch.txt \
    && pip install -r /tmp/requirements.txt

COPY . .
# Editable, so that the project's templates/ and static/ stay where settings.BASE_DIR expects them.
RUN pip install --no-deps -e . \
    && SECRET_KEY=build-only python manage.py collectstatic --noinput \
    && mkdir -p /data/var /data/private \
    && chown -R mpox:mpox /data

USER mpox
VOLUME ["/data"]
EXPOSE 8000
CMD ["sh", "-c", "exec gunicorn mpoxsite.wsgi --bind 0.0.0.0:${PORT} --workers ${WEB_CONCURRENCY:-3} --threads 4 --timeout 60 --access-logfile -"]
