# obmin gateway image: slim, non-root, works with a read-only root filesystem.
# State (audit log, PKI) lives under /var/lib/obmin, which must be a volume.
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
COPY config/example /etc/obmin/example
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    OBMIN_CLIENT__HOST=0.0.0.0 OBMIN_ADMIN__HOST=0.0.0.0 \
    OBMIN_AUDIT__PATH=/var/lib/obmin/audit.db \
    OBMIN_KEYS__SIGNING_CERTIFICATE=/var/lib/obmin/pki/gateway/sign.crt \
    OBMIN_KEYS__SIGNING_KEY=/var/lib/obmin/pki/gateway/sign.key
USER obmin
VOLUME ["/var/lib/obmin"]
EXPOSE 8080 4000
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:4000/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["obmin"]
CMD ["serve", "-c", "/etc/obmin/example/gateway.yaml"]
