// One of two translation units that use tests/c/cxx_wrapper.hpp: it holds
// nothing but its own table of the wrapper's functions.
#include "cxx_wrapper.hpp"

WrapperTable table_a = {&Words::add, &Words::swap, &Words::max, &wrapper::store_max};
