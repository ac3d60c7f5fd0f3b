#include "attn/algos/algos.h"

namespace attnccl {
namespace attn {

NeedMatrix::NeedMatrix(const Problem& p) : n_(p.nranks), need_(static_cast<size_t>(p.nranks) * p.nranks, 0) {
  for (int q = 0; q < n_; ++q) {
    for (int k = 0; k < n_; ++k) {
      need_[static_cast<size_t>(q) * n_ + k] =
          anyVisible(p, p.tokens[q], 0, p.tokens[q].size(), p.tokens[k]) ? 1 : 0;
    }
  }
}

Round& roundOf(RankSchedule& r, int k) {
  if (static_cast<int>(r.rounds.size()) <= k) r.rounds.resize(k + 1);
  return r.rounds[k];
}

void addTransfer(Schedule& s, int round, int from, int to, const ItemId& item) {
  roundOf(s.ranks[from], round).transfers.push_back(Transfer{item, to, true});
  roundOf(s.ranks[to], round).transfers.push_back(Transfer{item, from, false});
}

}  // namespace attn
}  // namespace attnccl
