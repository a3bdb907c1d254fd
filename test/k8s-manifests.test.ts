// The deploy manifests in k8s/: every object valid against the Kubernetes schemas
// (kubernetes-models), kustomization.yaml complete, and the Role granting exactly what the
// Kubernetes runner calls.
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { Job } from "kubernetes-models/batch/v1/Job";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { Role } from "kubernetes-models/rbac.authorization.k8s.io/v1/Role";
import { RoleBinding } from "kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { describe, expect, it } from "vitest";
import { loadAll } from "js-yaml";
import { parseJobTemplate } from "../src/runner/kubernetes.js";

const K8S = path.resolve(import.meta.dirname, "../k8s");
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const MODELS: Record<string, new (o: any) => { validate(): void }> = {
  "apps/v1/Deployment": Deployment,
  "batch/v1/Job": Job,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
  "rbac.authorization.k8s.io/v1/Role": Role,
  "rbac.authorization.k8s.io/v1/RoleBinding": RoleBinding,
  "v1/Namespace": Namespace,
  "v1/PersistentVolumeClaim": PersistentVolumeClaim,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "v1/ServiceAccount": ServiceAccount,
};

function docs(file: string): Doc[] {
  return (loadAll(readFileSync(path.join(K8S, file), "utf8")) as Doc[]).filter(Boolean);
}

describe("k8s/ manifests", () => {
  const files = readdirSync(K8S).filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml");

  it("are valid Kubernetes objects", () => {
    for (const file of files) {
      for (const d of docs(file)) {
        const Model = MODELS[`${d.apiVersion}/${d.kind}`];
        expect(Model, `${file}: ${d.apiVersion} ${d.kind}`).toBeDefined();
        expect(() => new Model!(d).validate(), file).not.toThrow();
      }
    }
  });

  it("kustomization lists every manifest but the secret example, and the job template as a ConfigMap", () => {
    const k = docs("kustomization.yaml")[0]!;
    expect([...k.resources].sort()).toEqual(files.filter((f) => f !== "job.yaml" && f !== "secret.example.yaml").sort());
    expect(k.configMapGenerator[0].files).toEqual(["job.yaml"]);
    expect(() => parseJobTemplate(readFileSync(path.join(K8S, "job.yaml"), "utf8"))).not.toThrow();
  });

  it("the bot runs one replica with the Kubernetes runner, probes and the template mounted", () => {
    const d = docs("deployment.yaml")[0]!;
    expect(d.spec.replicas).toBe(1);
    const c = d.spec.template.spec.containers[0];
    const env = Object.fromEntries(c.env.filter((e: Doc) => "value" in e).map((e: Doc) => [e.name, e.value]));
    expect(env).toMatchObject({ HOST: "0.0.0.0", AUTORESEARCH_RUNNER: "kubernetes", AUTORESEARCH_JOB_TEMPLATE: "/etc/autoresearch/job.yaml" });
    expect(c.readinessProbe.httpGet.path).toBe("/ping");
    expect(c.livenessProbe.httpGet.path).toBe("/ping");
    expect(c.resources.requests).toBeDefined();
  });

  it("the Role grants only what the runner and the leader election use, in its namespace", () => {
    const [role] = docs("role.yaml");
    const grants = Object.fromEntries(role!.rules.flatMap((r: Doc) => r.resources.map((res: string) => [res, [...r.verbs].sort()])));
    expect(grants).toEqual({
      jobs: ["create", "delete", "get", "list", "watch"],
      pods: ["list"],
      "pods/log": ["get"],
      secrets: ["create", "delete"],
      leases: ["create", "get", "update"],
    });
    expect(role!.rules.find((r: Doc) => r.resources.includes("leases")).apiGroups).toEqual(["coordination.k8s.io"]);
  });
});
