# One image for every pycdn service (origin, edges, DNS router, player, `cdn`); docker-compose.yml
# runs it with a different command per service. Build: docker build -t pycdn:latest .
FROM python:3.11-slim

# ffmpeg packages videos (the origin and `cdn sample`); dig is handy inside the containers.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg bind9-dnsutils \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cdn ./cdn
COPY origin ./origin
COPY edge ./edge
COPY dnsrouter ./dnsrouter
COPY player ./player
RUN pip install --no-cache-dir . && useradd --system --create-home cdn \
    && mkdir -p /var/cdn/store /var/cdn/cache /out && chown -R cdn /var/cdn /out
COPY topology.yaml ./

USER cdn
ENV PYTHONUNBUFFERED=1
EXPOSE 8000 8080 8053 5353/udp 5353/tcp
CMD ["cdn", "--help"]
