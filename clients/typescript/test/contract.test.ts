/**
 * types.ts and errors.ts against memoryd's contract: test/fixtures/contract-schema.json is
 * msgspec's schema of sidecar/contract.py and the error table of sidecar/errors.py, written by
 * scripts/gen_contract_schema.py (memoryd's pytest fails when it is stale). The TypeScript
 * compiler reads the declared types; every difference is either a failure or listed below with
 * its reason, and a listed difference that is gone fails too (so the lists stay true).
 */
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import ts from "typescript";
import * as errorsModule from "../src/errors.js";
import { MemorydError, errorFromRpc } from "../src/errors.js";
import { MEMORY_CATEGORIES } from "../src/types.js";
import { repoPath } from "./helpers.js";

type Json = Record<string, unknown>;
interface Schema {
  literals: Record<string, string[]>;
  errors: Array<{ kind: string; code: number; retryable: boolean }>;
  $defs: Record<string, Json & { properties: Record<string, Json>; required?: string[]; additionalProperties?: boolean }>;
}

const schema = JSON.parse(fs.readFileSync(repoPath("test/fixtures/contract-schema.json"), "utf8")) as Schema;

/**
 * How a type in types.ts mirrors a Struct: `sent` = the client sends it (every value TS allows
 * must be accepted), `received` = memoryd sends it (every value memoryd may send must be
 * declared), `both`. The lists name the known differences and why.
 */
interface Pair {
  ts: string; // an exported type of types.ts, or `Type.field` for a type written inline there
  struct: string;
  direction: "sent" | "received" | "both";
  schemaOnly?: Record<string, string>;
  tsOnly?: Record<string, string>;
  loose?: Record<string, string>; // fields whose value types differ
}

const ADDED_BY_CLIENT = "the client adds it from its own arguments and settings";
const AS_STORED = "memoryd returns the stored value as is; legacy wrote only what types.ts declares";

const PAIRS: Pair[] = [
  { ts: "MemoryMetadata", struct: "MemoryMetadata", direction: "sent" },
  { ts: "MediaMetadata", struct: "MediaMetadata", direction: "both" },
  { ts: "TextInput", struct: "TextPart", direction: "sent" },
  { ts: "ImageInput", struct: "ImagePart", direction: "sent",
    schemaOnly: { data: "memoryd's name for base64; legacy callers send base64" } },
  { ts: "VideoInput", struct: "VideoPart", direction: "sent" },
  { ts: "MultimodalContent", struct: "MultimodalContent", direction: "sent" },
  { ts: "MemoryInput", struct: "MemoryInput", direction: "sent", schemaOnly: { vector: ADDED_BY_CLIENT } },
  { ts: "MemoryEntry", struct: "MemoryEntry", direction: "received",
    loose: { category: AS_STORED, summary: AS_STORED, ttl: AS_STORED, namespace: AS_STORED } },
  { ts: "MemorySearchResult", struct: "MemorySearchResult", direction: "received",
    tsOnly: { highlights: "legacy's type has it; neither legacy nor memoryd fills it" } },
  { ts: "ConversationState", struct: "ConversationState", direction: "both" },
  { ts: "PersonasState", struct: "PersonasStateCore", direction: "sent" },
  { ts: "PersonasState.stats", struct: "PersonasStats", direction: "sent" },
  { ts: "MemorySearchParams", struct: "MemorySearchParams", direction: "sent",
    schemaOnly: { vector: ADDED_BY_CLIENT, mode: ADDED_BY_CLIENT, mediaType: "searchMultimodal's option (MultimodalSearchParams)" } },
  { ts: "MemorySearchParams.timeRange", struct: "TimeRange", direction: "sent" },
  { ts: "MultimodalSearchParams", struct: "MemorySearchParams", direction: "sent",
    schemaOnly: { query: "searchMultimodal's first argument", vector: ADDED_BY_CLIENT, mode: ADDED_BY_CLIENT } },
  { ts: "RerankSearchParams", struct: "MemorySearchWithRerankParams", direction: "sent",
    schemaOnly: { query: "searchWithRerank's first argument", vector: ADDED_BY_CLIENT, mode: ADDED_BY_CLIENT } },
  { ts: "ListOptions", struct: "MemoryListParams", direction: "sent",
    schemaOnly: { offset: "memoryd's paging; legacy list() had none", before: "memoryd's paging; legacy list() had none" } },
  { ts: "DeleteWhereFilter", struct: "DeleteWhereParams", direction: "sent" },
];

/** Structs types.ts does not mirror: params memory.ts and kv.ts build from legacy arguments. */
const NOT_MIRRORED = new Set([
  "SavedEntry", "_SearchFilters", "MemorySaveBatchParams", "MemoryGetParams", "MemoryGetManyParams",
  "ListCursor", "MemoryDeleteParams", "RelatedContextParams", "PersonaSearchParams",
  "PersonaSearchAllParams", "TaskContextParams", "StateSaveParams", "StateLoadParams",
  "ConversationSaveParams", "SessionParams", "FindRecentParams", "ConversationStartParams",
  "ConversationProcessParams", "UpdatePlanParams", "AddObjectiveParams", "RemoveObjectiveParams",
  "FormatContextParams", "StoreFactsParams", "KVItem", "KVSetParams", "KVKeyParams", "KVKeysParams",
  "KVSetManyParams", "KVListParams", "KVNamespaceParams", "KVSweepParams",
]);

// -- the declared types, read by the compiler ------------------------------------------------

const srcFile = (name: string) => repoPath(`src/${name}`);
const program = ts.createProgram([srcFile("types.ts"), srcFile("errors.ts"), srcFile("config.ts")], {
  strict: true, noEmit: true, skipLibCheck: true, target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext,
});
const checker = program.getTypeChecker();

function exported(file: string, name: string): ts.Type {
  const source = program.getSourceFile(srcFile(file));
  assert.ok(source, `${file} not in the program`);
  const sym = checker.getExportsOfModule(checker.getSymbolAtLocation(source)!).find((s) => s.name === name);
  assert.ok(sym, `${file} exports no ${name}`);
  return checker.getDeclaredTypeOfSymbol(sym);
}

function property(type: ts.Type, name: string): ts.Symbol {
  const prop = checker.getPropertyOfType(type, name);
  assert.ok(prop, `no property ${name}`);
  return prop;
}

/** `Type` or `Type.field` of types.ts. */
function tsType(ref: string): ts.Type {
  const [name, ...fields] = ref.split(".");
  let type = exported("types.ts", name!);
  for (const f of fields) type = checker.getNonNullableType(checker.getTypeOfSymbol(property(type, f)));
  return type;
}

/** A value's shape, coarse enough to compare a TS type with a JSON schema. */
type Atom =
  | { k: "string" | "number" | "boolean" | "null" | "object" | "any" }
  | { k: "lit"; v: string }
  | { k: "ref"; v: string }
  | { k: "array"; items: Atom[] };

const TS_TO_STRUCT = new Map(PAIRS.filter((p) => !p.ts.includes(".")).map((p) => [p.ts, p.struct]));
// MultimodalInput's members are refs too; ConversationState inside PersonasState etc.
const refName = (t: ts.Type): string | undefined => {
  const name = t.aliasSymbol?.name ?? t.getSymbol()?.name;
  return name && TS_TO_STRUCT.has(name) ? TS_TO_STRUCT.get(name) : undefined;
};

function tsAtoms(t: ts.Type): Atom[] {
  if (t.isUnion()) return dedupe(t.types.flatMap(tsAtoms));
  const f = t.flags;
  if (f & ts.TypeFlags.Undefined) return [];
  if (f & ts.TypeFlags.Null) return [{ k: "null" }];
  if (f & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return [{ k: "any" }];
  if (t.isStringLiteral()) return [{ k: "lit", v: t.value }];
  if (f & ts.TypeFlags.StringLike) return [{ k: "string" }];
  if (f & ts.TypeFlags.NumberLike) return [{ k: "number" }];
  if (f & ts.TypeFlags.BooleanLike) return [{ k: "boolean" }];
  if (checker.isArrayType(t)) return [{ k: "array", items: tsAtoms(checker.getTypeArguments(t as ts.TypeReference)[0]!) }];
  if (t.aliasSymbol?.name === "Partial" && t.aliasTypeArguments?.[0]) return tsAtoms(t.aliasTypeArguments[0]);
  const ref = refName(t);
  return [ref ? { k: "ref", v: ref } : { k: "object" }];
}

function schemaAtoms(s: Json): Atom[] {
  if (Array.isArray(s["anyOf"])) return dedupe((s["anyOf"] as Json[]).flatMap(schemaAtoms));
  if (Array.isArray(s["enum"])) return (s["enum"] as string[]).map((v) => ({ k: "lit", v: String(v) }));
  if (typeof s["$ref"] === "string") return [{ k: "ref", v: (s["$ref"] as string).split("/").pop()! }];
  switch (s["type"]) {
    case "string": return [{ k: "string" }];
    case "integer": case "number": return [{ k: "number" }];
    case "boolean": return [{ k: "boolean" }];
    case "null": return [{ k: "null" }];
    case "object": return [{ k: "object" }];
    case "array": return [{ k: "array", items: s["items"] ? schemaAtoms(s["items"] as Json) : [{ k: "any" }] }];
    case undefined: return [{ k: "any" }];
    default: throw new Error(`schema type ${String(s["type"])} not understood`);
  }
}

function dedupe(atoms: Atom[]): Atom[] {
  const seen = new Map(atoms.map((a) => [JSON.stringify(a), a]));
  return [...seen.values()];
}

const objectish = (a: Atom) => a.k === "object" || a.k === "ref";

/** Every value of shape `a` is one of `set`. A Struct reference and a plain object are
 *  compatible here (each referenced pair is compared on its own). */
function covered(a: Atom, set: Atom[]): boolean {
  return set.some((s) => {
    if (s.k === "any") return true;
    if (a.k === "lit" && s.k === "string") return true;
    if (a.k === "ref" && s.k === "ref") return a.v === s.v;
    if (objectish(a) && objectish(s)) return true;
    if (a.k === "array" && s.k === "array") return a.items.every((i) => covered(i, s.items));
    if (a.k === "lit" && s.k === "lit") return a.v === s.v;
    return a.k === s.k && a.k !== "array";
  });
}

const show = (atoms: Atom[]): string => atoms.map((a) =>
  a.k === "lit" ? JSON.stringify(a.v) : a.k === "ref" ? a.v : a.k === "array" ? `(${show(a.items)})[]` : a.k).join(" | ");

// -- the checks ----------------------------------------------------------------------------------

function differences(pair: Pair): string[] {
  const def = schema.$defs[pair.struct];
  if (!def) return [`no Struct ${pair.struct} in the schema`];
  const type = tsType(pair.ts);
  const problems: string[] = [];
  const tsFields = new Map(checker.getPropertiesOfType(type).map((p) => [p.name, p]));
  const required = new Set(def.required ?? []);
  const sent = pair.direction !== "received";
  const received = pair.direction !== "sent";
  const open = def.additionalProperties !== false;
  const used = { schemaOnly: new Set<string>(), tsOnly: new Set<string>(), loose: new Set<string>() };

  for (const name of Object.keys(def.properties)) {
    if (tsFields.has(name)) continue;
    if (pair.schemaOnly?.[name]) used.schemaOnly.add(name);
    else problems.push(`${pair.struct}.${name} is not in ${pair.ts}`);
  }
  for (const [name, prop] of tsFields) {
    const field = def.properties[name];
    if (!field) {
      if (pair.tsOnly?.[name]) used.tsOnly.add(name);
      else if (!(sent && !received && open)) problems.push(`${pair.ts}.${name} is not in ${pair.struct}`);
      continue;
    }
    const optional = (prop.flags & ts.SymbolFlags.Optional) !== 0;
    if (sent && required.has(name) && optional) problems.push(`${pair.ts}.${name} is optional, memoryd requires it`);
    if (received && !required.has(name) && !optional) problems.push(`${pair.ts}.${name} is required, memoryd may omit it`);
    const mine = tsAtoms(checker.getTypeOfSymbol(prop));
    const theirs = schemaAtoms(field);
    const what = `${pair.ts}.${name}: TypeScript ${show(mine)}, memoryd ${show(theirs)}`;
    const found: string[] = [];
    if (sent && !mine.every((a) => covered(a, theirs))) found.push(`${what} (memoryd refuses some)`);
    if (received && !theirs.every((a) => covered(a, mine))) found.push(`${what} (undeclared values arrive)`);
    if (found.length > 0 && pair.loose?.[name]) used.loose.add(name);
    else problems.push(...found);
  }
  for (const kind of ["schemaOnly", "tsOnly", "loose"] as const) {
    for (const name of Object.keys(pair[kind] ?? {})) {
      if (!used[kind].has(name)) problems.push(`${pair.ts}: ${kind} lists ${name}, which is no longer a difference`);
    }
  }
  return problems;
}

function literals(file: string, ref: string): string[] {
  const [name, field] = ref.split(".");
  let type = exported(file, name!);
  if (field) type = checker.getNonNullableType(checker.getTypeOfSymbol(property(type, field)));
  return tsAtoms(type).map((a) => (a.k === "lit" ? a.v : `<${a.k}>`)).sort();
}

describe("types.ts against contract.py (test/fixtures/contract-schema.json)", () => {
  it("every Struct is mirrored in types.ts or listed as not mirrored", () => {
    const mirrored = new Set(PAIRS.map((p) => p.struct));
    const unknown = Object.keys(schema.$defs).filter((s) => !mirrored.has(s) && !NOT_MIRRORED.has(s));
    assert.deepEqual(unknown, [], "new Structs: mirror them in types.ts (PAIRS) or list them in NOT_MIRRORED");
  });

  for (const pair of PAIRS) {
    it(`${pair.ts} ~ ${pair.struct} (${pair.direction})`, () => assert.deepEqual(differences(pair), []));
  }

  for (const [tsName, contractName] of [
    ["MemoryCategory", "MemoryCategory"], ["PersonaId", "PersonaId"], ["MediaType", "MediaType"],
    ["EntryType", "EntryType"],
  ] as const) {
    it(`${tsName} has the contract's values`, () => {
      assert.deepEqual(literals("types.ts", tsName), [...schema.literals[contractName]!].sort());
    });
  }

  it("MEMORY_CATEGORIES lists the categories in the contract's order", () => {
    assert.deepEqual([...MEMORY_CATEGORIES], schema.literals["MemoryCategory"]);
  });

  it("sidecar.searchMode takes the contract's search modes", () => {
    assert.deepEqual(literals("config.ts", "SidecarSettings.searchMode"), [...schema.literals["SearchMode"]!].sort());
  });

  it("the check itself notices a difference", () => {
    // ConversationState checked against a Struct with other fields must fail, or the checks prove nothing
    assert.notDeepEqual(differences({ ts: "ConversationState", struct: "MemoryInput", direction: "both" }), []);
    assert.notDeepEqual(differences({ ts: "MemoryEntry", struct: "MemoryEntry", direction: "received" }), []);
    // a listed difference that is none is reported
    assert.deepEqual(differences({ ts: "DeleteWhereFilter", struct: "DeleteWhereParams", direction: "sent", loose: { category: "x" } }),
      ["DeleteWhereFilter: loose lists category, which is no longer a difference"]);
  });
});

describe("errors.ts against errors.py", () => {
  type ErrorClass = new (message: string) => MemorydError;
  const classes = (Object.values(errorsModule) as unknown[]).filter(
    (v): v is ErrorClass => typeof v === "function" && v.prototype instanceof MemorydError,
  );

  it("one error class per kind memoryd sends, plus the client's connection error", () => {
    const kinds = classes.map((cls) => new cls("x").kind).sort();
    assert.deepEqual(kinds, [...schema.errors.map((e) => e.kind), "connection"].sort());
  });

  it("ErrorKind is those kinds", () => {
    assert.deepEqual(literals("errors.ts", "ErrorKind"), [...schema.errors.map((e) => e.kind), "connection"].sort());
  });

  for (const e of schema.errors) {
    it(`${e.kind}: code ${e.code}, retryable ${e.retryable}, found by kind and by code`, () => {
      const byKind = errorFromRpc({ code: 0, message: "m", data: { kind: e.kind } });
      const byCode = errorFromRpc({ code: e.code, message: "m" });
      for (const err of [byKind, byCode]) {
        assert.deepEqual({ kind: err.kind, code: err.code, retryable: err.retryable }, e);
      }
      assert.equal(byKind.constructor, byCode.constructor);
    });
  }
});
