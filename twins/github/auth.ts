// GitHub App authentication: RS256 app JWTs checked against the app's public key, and opaque
// installation tokens.

import { createPublicKey, randomBytes, verify, type KeyObject } from "node:crypto";
import { HttpError } from "./http.js";

export interface JwtClaims {
  iss: string;
  iat: number;
  exp: number;
}

export function looksLikeJwt(token: string): boolean {
  return /^eyJ[\w-]*\.[\w-]+\.[\w-]+$/.test(token);
}

function jwtError(message: string): HttpError {
  return new HttpError(401, message, undefined, "https://docs.github.com/rest");
}

function decodePart(part: string): Record<string, unknown> {
  const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error("not an object");
  return value as Record<string, unknown>;
}

/** Decodes a JWT without verifying it (to learn which app it claims to be). */
export function decodeJwt(token: string): { header: Record<string, unknown>; claims: Record<string, unknown> } {
  const [h = "", c = ""] = token.split(".");
  try {
    return { header: decodePart(h), claims: decodePart(c) };
  } catch {
    throw jwtError("A JSON web token could not be decoded");
  }
}

/** Verifies an app JWT the way GitHub does (RS256, iat/exp present, exp at most 10 minutes ahead). */
export function verifyAppJwt(token: string, publicKey: KeyObject, nowSeconds: number): JwtClaims {
  const [h = "", c = "", s = ""] = token.split(".");
  const { header, claims } = decodeJwt(token);
  if (header.alg !== "RS256") throw jwtError("A JSON web token could not be decoded");
  const ok = verify("sha256", Buffer.from(`${h}.${c}`), publicKey, Buffer.from(s, "base64url"));
  if (!ok) throw jwtError("A JSON web token could not be decoded");
  const { iat, exp, iss } = claims;
  if (typeof iat !== "number" || !Number.isInteger(iat) || iat > nowSeconds + 60) {
    throw jwtError("'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued.");
  }
  if (typeof exp !== "number" || !Number.isInteger(exp) || exp <= nowSeconds) {
    throw jwtError("'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.");
  }
  if (exp - iat > 600 + 60 || exp > nowSeconds + 600 + 60) {
    throw jwtError("'Expiration time' claim ('exp') is too far in the future");
  }
  if (typeof iss !== "string" && typeof iss !== "number") throw jwtError("'Issuer' claim ('iss') must be an Integer");
  return { iss: String(iss), iat, exp };
}

export function publicKeyFromPrivate(privateKeyPem: string): KeyObject {
  return createPublicKey(privateKeyPem.replace(/\\n/g, "\n"));
}

const ALPHANUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** A token in GitHub's format: prefix + 36 alphanumerics (ghs_ for installations). */
export function newToken(prefix: string): string {
  const bytes = randomBytes(36);
  let out = "";
  for (const b of bytes) out += ALPHANUM[b % ALPHANUM.length];
  return `${prefix}${out}`;
}
