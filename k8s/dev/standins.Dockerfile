# Development only: the stand-ins of tools/standins (ChatbotMobile here) for skaffold's dev
# profile. Never deployed by the chart.
FROM python:3.12-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY services ./services
COPY tools ./tools
RUN pip install . && useradd --uid 10001 app
USER 10001
