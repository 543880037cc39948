# One image for every ocrdash process: the web dashboard, the ingest worker, the scheduler and
# the host agent (docker-compose.yml picks the command). On a real OCR host the agent needs
# only the core dependencies (`pip install .`); this image carries the dashboard's as well.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Aspose's bundled .NET runtime aborts the process without ICU unless told not to need it.
    DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1

WORKDIR /app

# Dependencies first, so a change of code does not reinstall the (large) Aspose wheel: exactly
# the versions of uv.lock, checked against its hashes.
COPY pyproject.toml uv.lock README.md ./
RUN pip install uv==0.13.9 \
    && uv export --frozen --extra dashboard --no-emit-project --output-file /tmp/requirements.txt \
    && pip install --no-deps --require-hashes -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps -e .

# Named volumes copy ownership and mode from the image's folder on first use: create them owned
# by the unprivileged user so the agent can move files into quarantine and keep its state.
# Owning the model files is also what lets the agent ask the kernel whether anyone holds one
# open (a lease), in any container: without that, the in-use check refuses every prune.
# /state and /keys hold private keys: 0700, or the key loaders refuse them (anyone who can
# write the folder could swap the key).
RUN useradd --system --uid 10001 --home-dir /app ocrdash \
    && mkdir -p /models /state /keys /app/staticfiles /app/var \
    && chown -R ocrdash:ocrdash /models /state /keys /app/staticfiles /app/var \
    && chmod 0700 /state /keys
USER ocrdash

EXPOSE 8000
CMD ["gunicorn", "-c", "python:ocrdash.gunicorn_conf", "ocrdash.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
