// Just enough JSON for the planner: read a flat object (string keys; number, string, true,
// false or null values) and write objects and arrays. Not a general parser: nested values in
// an input file are an error (cluster files are flat).
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace attnccl {
namespace plan {
namespace json {

struct Value {
  enum Kind { kNumber, kString, kBool, kNull } kind = kNull;
  double number = 0;
  std::string text;
  bool flag = false;
};

// Parses `{ "key": value, ... }`. false and *error (with the offset) on anything else.
bool parseFlatObject(const std::string& text, std::vector<std::pair<std::string, Value>>* out, std::string* error);

// Writing: values are JSON text, built bottom-up.
using Members = std::vector<std::pair<std::string, std::string>>;
std::string str(const std::string& s);
std::string num(double v);  // null when not finite
std::string boolean(bool b);
std::string object(const Members& m, int indent = 0);
std::string array(const std::vector<std::string>& items, int indent = 0);

}  // namespace json
}  // namespace plan
}  // namespace attnccl
