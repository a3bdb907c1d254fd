// HTTP plumbing of the twin: route matching on GitHub's path templates, GitHub-style errors and
// RFC 5988 pagination links.

export const DOCS = "https://docs.github.com/rest";

export interface ErrorDetail {
  resource?: string;
  field?: string;
  code: string;
  message?: string;
}

/** An error answered the way GitHub does: `{ message, documentation_url, status, errors? }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly errors?: ErrorDetail[],
    readonly documentationUrl: string = DOCS,
  ) {
    super(message);
  }

  body(): Record<string, unknown> {
    const body: Record<string, unknown> = { message: this.message, documentation_url: this.documentationUrl, status: String(this.status) };
    if (this.errors) body.errors = this.errors;
    return body;
  }
}

export const notFound = (): HttpError => new HttpError(404, "Not Found");

export function validationFailed(errors: ErrorDetail[], documentationUrl?: string): HttpError {
  return new HttpError(422, "Validation Failed", errors, documentationUrl);
}

export function missingField(resource: string, field: string): HttpError {
  return validationFailed([{ resource, field, code: "missing_field" }]);
}

export interface Route<C> {
  method: string;
  /** GitHub's path template, e.g. /repos/{owner}/{repo}/pulls/{pull_number}. */
  template: string;
  /** The last parameter may swallow slashes (e.g. {path} of contents, {ref} of git refs). */
  greedyLast: boolean;
  segments: string[];
  handler: (ctx: C, params: Record<string, string>) => Promise<Reply> | Reply;
  /** Writes count separately in the request log (true for POST/PATCH/PUT/DELETE). */
  write: boolean;
}

export interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Raw bytes instead of JSON. */
  raw?: Buffer;
}

export class Router<C> {
  private readonly routes: Array<Route<C>> = [];

  on(method: string, template: string, handler: Route<C>["handler"], opts: { greedy?: boolean } = {}): void {
    this.routes.push({
      method,
      template,
      greedyLast: opts.greedy ?? false,
      segments: template.split("/").filter(Boolean),
      handler,
      write: method !== "GET" && method !== "HEAD",
    });
  }

  match(method: string, path: string): { route: Route<C>; params: Record<string, string> } | { allowed: string[] } | null {
    const parts = path.split("/").filter(Boolean);
    const allowed: string[] = [];
    for (const route of this.routes) {
      const params = matchSegments(route, parts);
      if (!params) continue;
      if (route.method === method || (method === "HEAD" && route.method === "GET")) return { route, params };
      allowed.push(route.method);
    }
    return allowed.length ? { allowed } : null;
  }
}

function matchSegments<C>(route: Route<C>, parts: string[]): Record<string, string> | null {
  const segs = route.segments;
  if (route.greedyLast ? parts.length < segs.length : parts.length !== segs.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i] ?? "";
    const last = i === segs.length - 1;
    if (seg.startsWith("{") && seg.endsWith("}")) {
      const name = seg.slice(1, -1);
      const raw = last && route.greedyLast ? parts.slice(i).join("/") : (parts[i] ?? "");
      try {
        params[name] = raw.split("/").map(decodeURIComponent).join("/");
      } catch {
        return null;
      }
    } else if (seg !== parts[i]) {
      return null;
    }
  }
  return params;
}

export interface Page<T> {
  items: T[];
  headers: Record<string, string>;
}

/** Slices `all` by `per_page` (default 30, max 100) and `page`, with a GitHub-style Link header. */
export function paginate<T>(all: T[], query: URLSearchParams, selfUrl: URL): Page<T> {
  const perPage = Math.min(100, Math.max(1, Number(query.get("per_page") ?? 30) || 30));
  const page = Math.max(1, Number(query.get("page") ?? 1) || 1);
  const last = Math.max(1, Math.ceil(all.length / perPage));
  const items = all.slice((page - 1) * perPage, page * perPage);
  const link = (p: number) => {
    const u = new URL(selfUrl.toString());
    u.searchParams.set("per_page", String(perPage));
    u.searchParams.set("page", String(p));
    return u.toString();
  };
  const rels: string[] = [];
  if (page > 1) rels.push(`<${link(page - 1)}>; rel="prev"`);
  if (page < last) rels.push(`<${link(page + 1)}>; rel="next"`, `<${link(last)}>; rel="last"`);
  if (page > 1) rels.push(`<${link(1)}>; rel="first"`);
  return { items, headers: rels.length ? { link: rels.join(", ") } : {} };
}
