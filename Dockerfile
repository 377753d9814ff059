# One image for every deployable (API, workers, scheduler, Flower, migrations, helm test); the
# chart picks the command. tests/chart/test_wheel.py proves what the final stage does: the
# project's wheel installed into a clean virtualenv runs the migrations, the API, a worker and
# the durable-tasks CLI against real Redis and PostgreSQL.

# --- build: the wheel and the virtualenv, with whatever tools building needs -----------------
FROM python:3.12-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /wheels/*.whl

# --- final: the virtualenv only; no compilers, no tests, no sources ---------------------------
FROM python:3.12-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    ENVIRONMENT=production
# A fixed uid/gid, so the chart's runAsUser/fsGroup (10001) match the files' owner.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app
COPY --from=build /opt/venv /opt/venv
WORKDIR /home/app
USER 10001:10001
EXPOSE 8000 5555 9401 9402 9403
# The API by default; the chart sets each deployable's command.
CMD ["python", "-m", "services.api.main"]
