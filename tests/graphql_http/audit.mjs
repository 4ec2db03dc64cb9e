// The graphql-http server audits (GraphQL over HTTP conformance) against one URL:
//   node audit.mjs http://127.0.0.1:8000/graphql
// prints one JSON line: [{"id", "name", "status": "ok" | "warn" | "error", "reason"}]
import { auditServer } from 'graphql-http';

const results = await auditServer({ url: process.argv[2] });
console.log(JSON.stringify(results.map((r) => ({
  id: r.id, name: r.name, status: r.status, reason: r.status === 'ok' ? undefined : r.reason,
}))));
