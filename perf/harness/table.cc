#include "harness/table.h"

namespace perf {

void Table::printHeader(const std::vector<std::string>& lines) {
  for (const std::string& l : lines) fprintf(out_, "# %s\n", l.c_str());
  fprintf(out_, "#\n#");
  for (const Column& c : columns_) fprintf(out_, " %*s", c.width, c.name.c_str());
  fprintf(out_, "\n#");
  for (const Column& c : columns_) fprintf(out_, " %*s", c.width, c.unit.c_str());
  fprintf(out_, "\n");
  fflush(out_);
}

void Table::printRow(const std::vector<Cell>& cells) {
  if (sums_.size() != columns_.size()) {
    sums_.assign(columns_.size(), 0.0);
    counts_.assign(columns_.size(), 0);
  }
  fprintf(out_, " ");
  for (size_t i = 0; i < columns_.size(); ++i) {
    const char* text = i < cells.size() ? cells[i].text.c_str() : "-";
    fprintf(out_, " %*s", columns_[i].width, text);
    if (i < cells.size() && cells[i].isNumber) {
      sums_[i] += cells[i].number;
      ++counts_[i];
    }
  }
  fprintf(out_, "\n");
  fflush(out_);
}

double Table::average(size_t column) const {
  if (column >= sums_.size() || counts_[column] == 0) return 0;
  return sums_[column] / static_cast<double>(counts_[column]);
}

void Table::printSummary(bool checked, int64_t wrongTotal) {
  if (!checked) {
    fprintf(out_, "# Wrong values        : not checked (-c 0)\n");
  } else {
    fprintf(out_, "# Wrong values        : %lld %s\n", static_cast<long long>(wrongTotal), wrongTotal ? "FAILED" : "OK");
  }
  for (size_t i = 0; i < columns_.size(); ++i) {
    if (columns_[i].avgLabel.empty() || i >= counts_.size() || counts_[i] == 0) continue;
    std::string label = "Avg " + columns_[i].avgLabel;
    fprintf(out_, "# %-20s: %.3f\n", label.c_str(), average(i));
  }
  fflush(out_);
}

}  // namespace perf
