# The bot: compiled TypeScript on a slim Node image, running as a non-root user.
FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim
# python3, git and bubblewrap run the experiment harness of the local runner and its sandbox
# (the Kubernetes runner needs none of them). bwrap needs user namespaces, which container
# runtimes usually forbid inside a container: the local runner then refuses to start, and the
# way is the Kubernetes runner, or the bot on a host or VM.
RUN apt-get update && apt-get install -y --no-install-recommends python3 git bubblewrap ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000 AUTORESEARCH_RUNS_DIR=/data/runs AUTORESEARCH_CACHE_DIR=/data/cache
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json app.yml program.md ./
COPY trainer ./trainer
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 3000
CMD ["npx", "probot", "run", "./dist/src/index.js"]
