#!/usr/bin/env python3
"""doc_snippets.py DOC OUT: a gtest file running every example of DOC.

An example is a ```cpp block whose first line is `// Example: <name>`; it holds namespace-scope
code with a `void Run(const std::string& dir)` (dir: an empty directory of its own, removed after). Each goes
into namespace doc_<name>; one test per example runs it on an embedded cluster."""
import re
import sys

doc, out = sys.argv[1], sys.argv[2]
text = open(doc, encoding="utf-8").read()
examples = []
for block in re.findall(r"```cpp\n(.*?)```", text, re.S):
    m = re.match(r"// Example: (\w+)\n", block)
    if m:
        examples.append((m.group(1), block))
if not examples:
    sys.exit(f"{doc}: no examples found")

parts = [f"""// Generated from {doc} by tests/doc_snippets.py: do not edit.
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include "data_fixture.h"
#include "lumen/data/dataset.h"
#include "lumen/lumen.h"

namespace ld = lumen::data;
"""]
for name, code in examples:
    parts.append(f"namespace doc_{name} {{\n#line 1 \"{doc} (Example: {name})\"\n{code}}}  // namespace doc_{name}\n")
parts.append("""
namespace {

class DocExamples : public lumen::testing::DataFixture {};
""")
for name, _ in examples:
    parts.append(f"""
TEST_F(DocExamples, {name}) {{
  EXPECT_NO_THROW(doc_{name}::Run(dir_.string()));
}}
""")
parts.append("\n}  // namespace\n")
open(out, "w", encoding="utf-8").write("".join(parts))
