// A webhook receiver for the GitHub twin's own tests: it records every delivery and checks its
// signature, its content type and its payload against GitHub's webhook schema.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { formatErrors, validateWebhook } from "../../twins/github/schema.js";

export interface ReceivedWebhook {
  event: string;
  action: string | null;
  delivery: string;
  payload: Record<string, unknown>;
  signatureOk: boolean;
}

/** Listens on a free port; what is wrong with a delivery is pushed to `problems` (answered 401 when unsigned). */
export async function startWebhookReceiver(
  secret: string,
  problems: string[] = [],
): Promise<{ url: string; received: ReceivedWebhook[]; problems: string[]; server: Server }> {
  const received: ReceivedWebhook[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      const expected = Buffer.from(`sha256=${createHmac("sha256", secret).update(body).digest("hex")}`);
      const got = Buffer.from(String(req.headers["x-hub-signature-256"] ?? ""));
      const signatureOk = got.length === expected.length && timingSafeEqual(got, expected);
      const payload = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
      const event = String(req.headers["x-github-event"]);
      received.push({ event, action: typeof payload.action === "string" ? payload.action : null, delivery: String(req.headers["x-github-delivery"]), payload, signatureOk });
      if (!signatureOk) problems.push(`webhook ${event}: bad signature`);
      const errors = validateWebhook(event, payload);
      if (errors.length) problems.push(`webhook ${event}.${String(payload.action)}:\n${formatErrors(errors)}`);
      if (req.headers["content-type"] !== "application/json") problems.push(`webhook ${event}: content-type ${String(req.headers["content-type"])}`);
      res.writeHead(signatureOk ? 200 : 401).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/api/github/webhooks`, received, problems, server };
}
