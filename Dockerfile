# One image for the compose services web (daphne), worker and beat (Celery); see docker-compose.yml.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir --disable-pip-version-check -r requirements.txt
COPY . .
# Celery refuses to be comfortable as root, and nothing here needs root.
RUN useradd --create-home lab && mkdir -p /app/var && chown lab /app/var
USER lab
EXPOSE 8000
# No DJANGO_SECRET_KEY here: the settings refuse to start without one (docker-compose.yml
# requires it), and .dockerignore keeps a checkout's var/secret_key out of the image.
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "labsite.asgi:application"]
