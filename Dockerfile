# zproxy's container image. Multi-stage: the build stage compiles TypeScript with the full dependency
# tree; the runtime stage holds dist/, the production dependencies and nothing else, and runs as a
# non-root user with a read-only root file system (see docs/deployment.md).
#
#   podman build -t zproxy .            (or docker build)
#   podman run --rm -p 8000:8000 -v ./zproxy.json:/etc/zproxy/zproxy.json:ro --read-only zproxy
#
# NODE_IMAGE is the base of both stages: the official Node 24 image by default; where no registry can be
# reached, a local one (deploy/container/make-base-image.sh makes one from Debian packages).
ARG NODE_IMAGE=docker.io/library/node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# No install scripts: the `node` dev dependency's would fetch a second Node; the image's Node builds.
# Behind a proxy that re-signs TLS, hand its CA bundle in as the build secret `npm_ca`
# (`--secret id=npm_ca,src=/etc/ssl/certs/ca-certificates.crt`); it stays out of every layer.
RUN --mount=type=secret,id=npm_ca \
  if [ -f /run/secrets/npm_ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/npm_ca; fi; \
  npm ci --no-fund --no-audit --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build \
  && find dist -name '*.map' -delete \
  && npm prune --omit=dev --ignore-scripts --no-fund --no-audit

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY schema ./schema
COPY examples ./examples
# The configuration's documented place; mount yours over it (a file or the folder, read-only).
COPY deploy/container/zproxy.json /etc/zproxy/zproxy.json
# A user of its own, by number (no account needed in the image); it owns nothing in it.
USER 10001:10001
EXPOSE 8000
# SIGTERM drains (shutdown_grace_ms). Node runs as PID 1 and handles it itself.
STOPSIGNAL SIGTERM
# The V8 flags on Node's command line (src/cli/v8-flags.ts): no re-exec at start.
ENTRYPOINT ["node", "--max-semi-space-size=2", "--heap-growing-percent=20", "--no-maglev", "/app/dist/cli/main.js"]
# `zproxy health`: GET /healthz at the admin listener of the config (the default one has it on
# 127.0.0.1:9901), else a connection to its first listener. (Kept by `docker build` and by
# `podman build --format docker`; OCI images have no HEALTHCHECK.)
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
  CMD ["node", "/app/dist/cli/main.js", "health", "/etc/zproxy/zproxy.json"]
CMD ["run", "/etc/zproxy/zproxy.json"]
