// Render contracts/asyncapi.json as a page people can browse (make asyncapi-docs): topics, messages,
// payload schemas, who sends and receives what. The official React component
// (@asyncapi/react-component, pinned in package.json) renders it here, in Node, to static HTML,
// so the page reads without JavaScript; its standalone bundle, copied beside the page, then makes
// it interactive (expand a schema, the sidebar). Nothing is fetched: the page opens from disk.
//
//   node tools/asyncapi/docs.mjs [output folder]       (default: .cache/asyncapi-docs)
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import parserModule from '@asyncapi/parser';
import React from 'react';
import { renderToString } from 'react-dom/server';
import component from '@asyncapi/react-component';

const { Parser, DiagnosticSeverity, stringify } = parserModule;
const { AsyncApiComponentWP } = component;
const require = createRequire(import.meta.url);
const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const SOURCE = join(ROOT, 'contracts', 'asyncapi.json');
const CONFIG = {
  show: { sidebar: true, info: true, servers: true, operations: true, messages: true, schemas: true, errors: true },
  sidebar: { showOperations: 'byOperationsTags' },
};

function escapeHtml(text) {
  return text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
}

function page(title, body, stringified) {
  // The parsed document travels as JSON inside a script element; "<" is escaped so no "</script>" ends it.
  const data = JSON.stringify(stringified).replace(/</g, '\\u003c');
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${escapeHtml(title)}</title>
  <link rel="stylesheet" href="default.min.css">
</head>
<body>
  <div id="asyncapi">${body}</div>
  <script src="asyncapi-standalone.js"></script>
  <script>
    AsyncApiStandalone.hydrate({ schema: ${data}, config: ${JSON.stringify(CONFIG)} }, document.getElementById('asyncapi'));
  </script>
</body>
</html>
`;
}

async function main(args) {
  const out = resolve(args[0] ?? join(ROOT, '.cache', 'asyncapi-docs'));
  const { document, diagnostics } = await new Parser().parse(await readFile(SOURCE, 'utf8'), { source: SOURCE });
  const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
  if (document === undefined || errors.length) {
    errors.forEach((d) => console.error(`error ${d.code} at ${d.path.join('/')}: ${d.message}`));
    console.error(`${relative(ROOT, SOURCE)} is not valid AsyncAPI: run node tools/asyncapi/validate.mjs`);
    return 1;
  }
  const body = renderToString(React.createElement(AsyncApiComponentWP, { schema: document, config: CONFIG }));
  const info = document.info();
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'index.html'), page(`${info.title()} ${info.version()}: AsyncAPI`, body, stringify(document)));
  const assets = dirname(require.resolve('@asyncapi/react-component/package.json'));
  await copyFile(join(assets, 'browser', 'standalone', 'index.js'), join(out, 'asyncapi-standalone.js'));
  await copyFile(join(assets, 'styles', 'default.min.css'), join(out, 'default.min.css'));
  const counts = `${document.channels().length} channels, ${document.operations().length} operations, ${document.messages().length} messages`;
  console.log(`AsyncAPI docs (${counts}) written; open file://${join(out, 'index.html')}`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
