// Schedule builders of the token-moving algorithms (see attn/schedule.h for the model). Each is
// a pure function of the problem; algos/<name>.cc holds its formula and diagram.
#pragma once

#include "attn/schedule.h"

namespace attnccl {
namespace attn {

Schedule ringSchedule(const Problem& p, bool backward);
Schedule passQSchedule(const Problem& p, bool backward);
Schedule allGatherSchedule(const Problem& p, bool backward);

// Whether rank q's queries see any of rank k's keys (memoised per problem by the builders).
class NeedMatrix {
 public:
  explicit NeedMatrix(const Problem& p);
  bool operator()(int q, int k) const { return need_[static_cast<size_t>(q) * n_ + k]; }

 private:
  int n_;
  std::vector<char> need_;
};

// Appends helpers: grow a rank's rounds as needed.
Round& roundOf(RankSchedule& r, int k);
void addTransfer(Schedule& s, int round, int from, int to, const ItemId& item);

}  // namespace attn
}  // namespace attnccl
