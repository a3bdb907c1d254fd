// The bot as its own process for `npm run chaos`, so that the chaos driver can kill it with
// SIGKILL at any moment: the real app and HTTP server, the Kubernetes runner against the
// driver's Kubernetes twin, the built-in proposer. Everything it knows lives in the twins; a
// new process after a kill starts from nothing, as a restarted pod would.
// Configured by environment: BOT_BASE_URL, BOT_APP_ID, BOT_PRIVATE_KEY, BOT_SECRET,
// KUBE_URL, KUBE_TOKEN, BOT_RESYNC_MS.
import { KubernetesRunner } from "../src/runner/kubernetes.js";
import { appFromEnv, need, startBot } from "../twins/bot.js";
import { JOB_TEMPLATE, NAMESPACE, kubeConfigFor } from "../twins/kube.js";

const say = (m: string) => process.stderr.write(`${m}\n`);
const runner = new KubernetesRunner({
  kubeConfig: kubeConfigFor(need("KUBE_URL"), need("KUBE_TOKEN")),
  namespace: NAMESPACE,
  template: () => JOB_TEMPLATE,
  deadlineMarginSeconds: 60,
  resyncMs: 1000,
  logger: { info: say, warn: say, error: say },
});
runner.start();
const bot = await startBot({
  ...appFromEnv(),
  runner,
  resyncMs: Number(process.env.BOT_RESYNC_MS ?? 1000),
  logSink: (line) => process.stderr.write(line.endsWith("\n") ? line : `${line}\n`),
  env: process.env,
});
console.log(`ready ${bot.webhookUrl}`);

process.on("SIGTERM", () => {
  runner.close();
  void bot.stop().finally(() => process.exit(0));
});
