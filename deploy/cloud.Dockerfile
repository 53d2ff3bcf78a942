# twincloud image: the cloud aggregator (API, storage, physics). Build from the repository root:
#   docker build -f deploy/cloud.Dockerfile -t twincloud .
FROM python:3.11-slim
RUN useradd --system --home-dir /var/lib/twincloud --create-home twincloud
WORKDIR /opt/twinedge
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY cloud ./cloud
RUN pip install --no-cache-dir '.[cloud]'
COPY deploy/cloud.example.toml /etc/twincloud/cloud.toml
USER twincloud
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)" || exit 1
ENTRYPOINT ["twincloud", "--config", "/etc/twincloud/cloud.toml"]
CMD ["serve", "--host", "0.0.0.0"]
