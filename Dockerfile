# obmin gateway image: slim, non-root, works with a read-only root filesystem
# (docker run --read-only --tmpfs /tmp -v obmin:/var/lib/obmin -p 8080:8080 -p 4000:4000 obmin).
# Configuration is read-only under /etc/obmin; state (audit log, PKI) lives in the volume
# /var/lib/obmin. The default start creates a development PKI there when none exists.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gateway gateway
COPY registry registry
COPY security security
COPY adapters adapters
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/obmin obmin \
    && mkdir -p /var/lib/obmin /etc/obmin && chown obmin /var/lib/obmin
COPY --from=build /install /usr/local
# The example registry, with the container's trust anchor and settings laid over it
# (tests/gateway/test_container_start.py replays these COPY lines and the CMD).
COPY config/example/registry /etc/obmin/registry
COPY config/container/ /etc/obmin/
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER obmin
VOLUME ["/var/lib/obmin"]
EXPOSE 8080 4000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:4000/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["obmin"]
CMD ["serve", "-c", "/etc/obmin/gateway.yaml", "--dev-pki", "/var/lib/obmin/pki"]
