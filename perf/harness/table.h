// The nccl-tests-like table: '#' header lines, a column header whose words line up with the
// row cells (so a script can split both on spaces), rows, and the summary lines.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "harness/harness.h"

namespace perf {

class Table {
 public:
  Table(std::vector<Column> columns, FILE* out) : columns_(std::move(columns)), out_(out) {}
  // Each line is printed as "# <line>", then the column names and units.
  void printHeader(const std::vector<std::string>& lines);
  void printRow(const std::vector<Cell>& cells);
  // "# Wrong values : N" (or "not checked") and "# Avg <label> : mean" per averaged column.
  void printSummary(bool checked, int64_t wrongTotal);
  // Mean of an averaged column over the rows printed so far that hold a number there (0 if none).
  double average(size_t column) const;

 private:
  std::vector<Column> columns_;
  FILE* out_;
  std::vector<double> sums_;
  std::vector<size_t> counts_;  // rows with a number in the column
};

}  // namespace perf
