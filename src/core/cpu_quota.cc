#include "core/cpu_quota.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

namespace attnccl {
namespace {

int coresOf(double quota, double period) {
  if (!(quota > 0) || !(period > 0)) return 0;
  return static_cast<int>(std::ceil(quota / period - 1e-9));
}

bool readFile(const std::string& path, std::string* out) {
  std::ifstream f(path);
  if (!f) return false;
  std::stringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

bool parseNumber(const std::string& text, double* v) {
  const char* s = text.c_str();
  char* end = nullptr;
  *v = strtod(s, &end);
  return end != s;
}

}  // namespace

int quotaCoresV2(const std::string& cpuMax) {
  std::istringstream in(cpuMax);
  std::string quota, period;
  if (!(in >> quota >> period) || quota == "max") return 0;
  double q = 0, p = 0;
  if (!parseNumber(quota, &q) || !parseNumber(period, &p)) return 0;
  return coresOf(q, p);
}

int quotaCoresV1(const std::string& quotaUs, const std::string& periodUs) {
  double q = 0, p = 0;
  if (!parseNumber(quotaUs, &q) || !parseNumber(periodUs, &p)) return 0;
  return coresOf(q, p);  // -1: no quota
}

int processQuotaCores() {
  // /proc/self/cgroup: "0::/path" (v2), "N:cpu,cpuacct:/path" (v1).
  std::string v2Path, v1Path, text;
  if (readFile("/proc/self/cgroup", &text)) {
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      const size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
      if (b == std::string::npos) continue;
      const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
      if (controllers.empty()) v2Path = path;
      std::istringstream names(controllers);
      std::string name;
      while (std::getline(names, name, ',')) {
        if (name == "cpu") v1Path = path;
      }
    }
  }
  std::vector<int> found;
  for (const std::string& dir : {"/sys/fs/cgroup" + v2Path, std::string("/sys/fs/cgroup")}) {
    if (readFile(dir + "/cpu.max", &text)) found.push_back(quotaCoresV2(text));
  }
  for (const std::string& mount : {std::string("/sys/fs/cgroup/cpu"), std::string("/sys/fs/cgroup/cpu,cpuacct")}) {
    for (const std::string& dir : {mount + v1Path, mount}) {
      std::string quota, period;
      if (readFile(dir + "/cpu.cfs_quota_us", &quota) && readFile(dir + "/cpu.cfs_period_us", &period)) {
        found.push_back(quotaCoresV1(quota, period));
      }
    }
  }
  int cores = 0;  // the tightest quota that applies
  for (int c : found) {
    if (c > 0 && (cores == 0 || c < cores)) cores = c;
  }
  return cores;
}

}  // namespace attnccl
