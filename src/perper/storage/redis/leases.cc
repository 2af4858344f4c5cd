// SPDX-License-Identifier: MIT
#include "perper/storage/redis/leases.h"
