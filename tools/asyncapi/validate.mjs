// Parse an AsyncAPI document with the official parser (@asyncapi/parser, pinned in package.json)
// and print every diagnostic of severity error; exit 1 if there is any, 2 if the file cannot be read.
//
//   node tools/asyncapi/validate.mjs [document]        (default: contracts/asyncapi.json)
//   node tools/asyncapi/validate.mjs --warnings [doc]  (also print warnings, which never fail)
//
// Its own rules ("spectral" lint) and the AsyncAPI JSON Schema both report here, so a document that
// passes is one that AsyncAPI tools (generator, studio, react-component) accept.
import { readFile } from 'node:fs/promises';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import parserModule from '@asyncapi/parser';

const { Parser, DiagnosticSeverity } = parserModule;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function where(diagnostic) {
  const path = diagnostic.path.length ? diagnostic.path.join('/') : '(document)';
  const line = diagnostic.range ? `:${diagnostic.range.start.line + 1}` : '';
  return `${path}${line}`;
}

function show(label, diagnostic) {
  console.log(`${label} ${diagnostic.code} at ${where(diagnostic)}: ${diagnostic.message}`);
}

async function main(args) {
  const warnings = args.includes('--warnings');
  const file = resolve(args.find((a) => !a.startsWith('--')) ?? resolve(ROOT, 'contracts', 'asyncapi.json'));
  let text;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    console.error(`cannot read ${file}: ${error.message}`);
    return 2;
  }
  const { document, diagnostics } = await new Parser().parse(text, { source: file });
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  errors.forEach((d) => show('error', d));
  const warned = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Warning);
  if (warnings) warned.forEach((d) => show('warning', d));
  const name = relative(process.cwd(), file) || file;
  if (errors.length || document === undefined) {
    console.log(`${name}: ${errors.length} error(s), ${warned.length} warning(s): not a valid AsyncAPI document`);
    return 1;
  }
  console.log(`${name}: valid AsyncAPI ${document.version()}, 0 errors, ${warned.length} warning(s)`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
