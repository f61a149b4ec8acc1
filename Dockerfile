FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=cohort.settings

# The libraries WeasyPrint renders PDFs with, and fonts for them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 \
        fonts-dejavu-core fonts-liberation \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml README.md ./
RUN pip install .

COPY . .
# Static files are collected into the image, so every container built from it (web, worker, beat)
# has them and their manifest; the build reaches no database and starts none (SPEC section 6).
# The key only satisfies the settings' check for this one command; it signs nothing.
RUN DEBUG=0 SECRET_KEY=build-time-only-collectstatic-signs-nothing-0123456789 \
    python manage.py collectstatic --noinput
RUN useradd --system --home-dir /app --shell /usr/sbin/nologin ecrf \
    && mkdir -p var/staticfiles var/media \
    && chown -R ecrf:ecrf var
USER ecrf

EXPOSE 8000
CMD ["gunicorn", "cohort.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
