# voicebot: installs exactly as `make run` does on a Debian host.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN make install
ENV VOICEBOT_HOST=0.0.0.0 HF_HUB_OFFLINE=1
EXPOSE 8080
CMD [".venv/bin/voicebot", "serve"]
