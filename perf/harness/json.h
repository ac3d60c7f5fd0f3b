// A small JSON text builder for the -J output (no parser; values are built bottom-up).
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace perf {
namespace json {

using Members = std::vector<std::pair<std::string, std::string>>;  // key -> JSON text

std::string str(const std::string& s);  // quoted and escaped
std::string num(double v);              // shortest exact form; null when not finite
std::string boolean(bool b);
std::string object(const Members& members);
std::string array(const std::vector<std::string>& items);

// Writes text (plus a newline) to path; false and *error on failure.
bool writeFile(const std::string& path, const std::string& text, std::string* error);

}  // namespace json
}  // namespace perf
