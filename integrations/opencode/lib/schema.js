// JSON Schema (the daemon's tools/list inputSchema) -> zod (OpenCode's
// tool.schema). Only what the daemon's schemas use: string, number,
// integer, boolean, null, array, object, enum, const, a list of types and
// oneOf/anyOf (a union). Bounds are kept where zod has them; anything else
// becomes z.any(): the daemon validates every call and names the field.

function withDescription(s, schema) {
  return typeof schema.description === "string" ? s.describe(schema.description) : s;
}

function one(z, schema, type) {
  switch (type) {
    case "string": {
      let s = z.string();
      if (Number.isInteger(schema.minLength)) s = s.min(schema.minLength);
      if (Number.isInteger(schema.maxLength)) s = s.max(schema.maxLength);
      return s;
    }
    case "integer":
    case "number": {
      let s = type === "integer" ? z.number().int() : z.number();
      if (typeof schema.minimum === "number") s = s.min(schema.minimum);
      if (typeof schema.maximum === "number") s = s.max(schema.maximum);
      return s;
    }
    case "boolean":
      return z.boolean();
    case "null":
      return z.null();
    case "array": {
      let s = z.array(schema.items && typeof schema.items === "object" ? convert(z, schema.items) : z.any());
      if (Number.isInteger(schema.minItems)) s = s.min(schema.minItems);
      if (Number.isInteger(schema.maxItems)) s = s.max(schema.maxItems);
      return s;
    }
    case "object":
      return objectOf(z, schema);
    default:
      return z.any();
  }
}

function union(z, members) {
  if (members.length === 0) return z.any();
  if (members.length === 1) return members[0];
  return z.union(members);
}

// One JSON Schema -> one zod schema (descriptions kept, no optionality).
export function convert(z, schema) {
  if (!schema || typeof schema !== "object") return z.any();
  let s;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) {
    const strings = schema.enum.every((v) => typeof v === "string");
    s = strings ? z.enum(schema.enum) : union(z, schema.enum.map((v) => z.literal(v)));
  } else if ("const" in schema) {
    s = z.literal(schema.const);
  } else if (Array.isArray(schema.oneOf) || Array.isArray(schema.anyOf)) {
    s = union(z, (schema.oneOf ?? schema.anyOf).map((m) => convert(z, m)));
  } else if (Array.isArray(schema.type)) {
    s = union(z, schema.type.map((t) => one(z, schema, t)));
  } else {
    s = one(z, schema, schema.type);
  }
  return withDescription(s, schema);
}

// The properties of an object schema as a zod raw shape (what OpenCode's
// tool() takes as args): required ones as they are, the rest optional.
export function shapeOf(z, schema) {
  const props = (schema && schema.properties) || {};
  const required = new Set(Array.isArray(schema?.required) ? schema.required : []);
  const shape = {};
  for (const [key, prop] of Object.entries(props)) {
    const s = convert(z, prop);
    shape[key] = required.has(key) ? s : s.optional();
  }
  return shape;
}

function objectOf(z, schema) {
  if (!schema.properties) {
    const extra = schema.additionalProperties;
    return z.record(z.string(), extra && typeof extra === "object" ? convert(z, extra) : z.any());
  }
  const o = z.object(shapeOf(z, schema));
  return schema.additionalProperties === false ? o.strict() : o.passthrough();
}
