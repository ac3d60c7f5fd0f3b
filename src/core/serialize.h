// Minimal binary records for bootstrap and internal exchanges: fixed-size values and
// length-prefixed strings, read back in the same order. Readers check bounds.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

namespace attnccl {

class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable<T>::value, "plain values only");
    buf_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void putString(const std::string& s) {
    put<uint64_t>(s.size());
    buf_.append(s);
  }
  const std::string& data() const { return buf_; }

 private:
  std::string buf_;
};

class Reader {
 public:
  explicit Reader(const std::string& s) : data_(s) {}
  template <typename T>
  bool get(T* v) {
    static_assert(std::is_trivially_copyable<T>::value, "plain values only");
    if (pos_ + sizeof(T) > data_.size()) return false;
    memcpy(v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool getString(std::string* s) {
    uint64_t n;
    if (!get(&n) || pos_ + n > data_.size()) return false;
    s->assign(data_.data() + pos_, n);
    pos_ += n;
    return true;
  }

 private:
  const std::string& data_;
  size_t pos_ = 0;
};

}  // namespace attnccl
