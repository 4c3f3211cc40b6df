# ONE image for the ringkv node and the ringkv operator.
#   docker build -t ringkv/ringkv:0.1.0 .
# The node is the default process (CMD), which is what a KVCluster's StatefulSet runs; the
# operator Deployment of charts/ringkv sets `command: [ringkv-operator]`.
# The e2e harness has no container runtime: its process kubelet plays this image with a local
# virtualenv described in e2e/images.json, which mirrors ENTRYPOINT, CMD, WORKDIR and ENV below
# (e2e/test_image_map.py checks that they agree).

FROM python:3.11-slim AS build
# Every dependency comes as a manylinux wheel (plyvel bundles LevelDB and Snappy), so neither
# stage needs a compiler or system libraries.
RUN python -m venv /opt/ringkv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY node ./node
COPY operator ./operator
RUN /opt/ringkv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/ringkv/bin/pip install --no-cache-dir . \
 && /opt/ringkv/bin/python -c "import kvnode, kvoperator" \
 && test -x /opt/ringkv/bin/ringkv-operator

FROM python:3.11-slim
RUN groupadd --gid 10001 ringkv \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/ringkv ringkv
COPY --from=build /opt/ringkv /opt/ringkv
ENV PATH=/opt/ringkv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV PYTHONUNBUFFERED=1
ENV PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
WORKDIR /home/ringkv
ENTRYPOINT []
CMD ["python", "-m", "kvnode"]
