#include "plan/json_lite.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace attnccl {
namespace plan {
namespace json {
namespace {

struct Reader {
  const std::string& s;
  size_t i = 0;
  std::string* error;

  bool fail(const char* what) {
    *error = std::string(what) + " at offset " + std::to_string(i);
    return false;
  }
  void skip() {
    while (i < s.size() && isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool expect(char c) {
    skip();
    if (i >= s.size() || s[i] != c) return fail((std::string("expected '") + c + "'").c_str());
    ++i;
    return true;
  }
  bool string(std::string* out) {
    if (!expect('"')) return false;
    out->clear();
    while (i < s.size() && s[i] != '"') {
      char c = s[i++];
      if (c == '\\') {
        if (i >= s.size()) break;
        char e = s[i++];
        c = e == 'n' ? '\n' : e == 't' ? '\t' : e;  // \" \\ \/ and the common controls
      }
      out->push_back(c);
    }
    if (i >= s.size()) return fail("unterminated string");
    ++i;
    return true;
  }
  bool value(Value* v) {
    skip();
    if (i >= s.size()) return fail("expected a value");
    if (s[i] == '"') {
      v->kind = Value::kString;
      return string(&v->text);
    }
    for (const char* word : {"true", "false", "null"}) {
      size_t n = std::char_traits<char>::length(word);
      if (s.compare(i, n, word) == 0) {
        i += n;
        v->kind = word[0] == 'n' ? Value::kNull : Value::kBool;
        v->flag = word[0] == 't';
        return true;
      }
    }
    if (s[i] == '{' || s[i] == '[') return fail("nested values are not supported");
    const char* begin = s.c_str() + i;
    char* end = nullptr;
    v->number = strtod(begin, &end);
    if (end == begin) return fail("expected a value");
    v->kind = Value::kNumber;
    i += static_cast<size_t>(end - begin);
    return true;
  }
};

std::string pad(int indent) { return std::string(static_cast<size_t>(indent), ' '); }

}  // namespace

bool parseFlatObject(const std::string& text, std::vector<std::pair<std::string, Value>>* out, std::string* error) {
  Reader r{text, 0, error};
  out->clear();
  if (!r.expect('{')) return false;
  r.skip();
  if (r.i < text.size() && text[r.i] == '}') {
    ++r.i;
  } else {
    for (;;) {
      std::string key;
      Value v;
      if (!r.string(&key) || !r.expect(':') || !r.value(&v)) return false;
      out->push_back({key, v});
      r.skip();
      if (r.i < text.size() && text[r.i] == ',') {
        ++r.i;
        continue;
      }
      if (!r.expect('}')) return false;
      break;
    }
  }
  r.skip();
  if (r.i != text.size()) return r.fail("text after the object");
  return true;
}

std::string str(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o + "\"";
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string boolean(bool b) { return b ? "true" : "false"; }

std::string object(const Members& m, int indent) {
  if (m.empty()) return "{}";
  std::string o = "{\n";
  for (size_t k = 0; k < m.size(); ++k) {
    o += pad(indent + 2) + str(m[k].first) + ": " + m[k].second + (k + 1 < m.size() ? ",\n" : "\n");
  }
  return o + pad(indent) + "}";
}

std::string array(const std::vector<std::string>& items, int indent) {
  if (items.empty()) return "[]";
  std::string o = "[\n";
  for (size_t k = 0; k < items.size(); ++k) o += pad(indent + 2) + items[k] + (k + 1 < items.size() ? ",\n" : "\n");
  return o + pad(indent) + "]";
}

}  // namespace json
}  // namespace plan
}  // namespace attnccl
