#include "harness/json.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace perf {
namespace json {

std::string str(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  // The shortest %g that reads back to the same double.
  for (int prec = 6; prec <= 17; ++prec) {
    snprintf(buf, sizeof(buf), "%.*g", prec, v);
    if (strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string boolean(bool b) { return b ? "true" : "false"; }

std::string object(const Members& members) {
  std::string out = "{";
  for (size_t i = 0; i < members.size(); ++i) {
    if (i) out += ", ";
    out += str(members[i].first) + ": " + members[i].second;
  }
  return out + "}";
}

std::string array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) {
    out += i ? ",\n  " : "\n  ";
    out += items[i];
  }
  return out + (items.empty() ? "]" : "\n]");
}

bool writeFile(const std::string& path, const std::string& text, std::string* error) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) {
    *error = path + ": " + strerror(errno);
    return false;
  }
  bool ok = fwrite(text.data(), 1, text.size(), f) == text.size() && fputc('\n', f) != EOF;
  ok = (fclose(f) == 0) && ok;
  if (!ok) *error = path + ": write failed";
  return ok;
}

}  // namespace json
}  // namespace perf
