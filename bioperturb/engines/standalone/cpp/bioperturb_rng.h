// bioperturb: the full state of Brian2's standalone random generators, in and out.
#ifndef BIOPERTURB_RNG_H
#define BIOPERTURB_RNG_H
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>
#include "objects.h"

namespace bioperturb_rng {
// RandomGenerator keeps the spare number of the polar method in private members. An
// explicit template instantiation may name private members ([temp.explicit]), which
// reads and writes them without changing Brian2's code.
template <typename Tag, typename Tag::type M>
struct Access { friend typename Tag::type get(Tag) { return M; } };
struct Gauss { typedef double brian::RandomGenerator::*type; friend type get(Gauss); };
struct HasGauss { typedef bool brian::RandomGenerator::*type; friend type get(HasGauss); };
template struct Access<Gauss, &brian::RandomGenerator::stored_gauss>;
template struct Access<HasGauss, &brian::RandomGenerator::has_stored_gauss>;

inline void fail(const std::string &msg) {
    std::cerr << "bioperturb: " << msg << std::endl;
    std::exit(3);
}

// Start a clock at its first tick at or after `begin`. Network::run sets the timestep
// from the network's start time but leaves the clock's time to the caller.
inline void start_at(Clock &clock, double begin) {
    clock.set_interval(begin, begin);
    clock.t[0] = clock.timestep[0] * clock.dt[0];
}

// "seed <n> <s>": generator i is seeded with s + i (as brian2.seed(s) does);
// "state <n>" then per generator: its Mersenne Twister state, has_gauss, gauss bits.
inline void load(const std::string &fname) {
    std::ifstream in(fname.c_str());
    if (!in.is_open()) fail("cannot read " + fname);
    std::vector<brian::RandomGenerator> &gens = brian::_random_generators;
    std::string kind;
    size_t n = 0;
    in >> kind >> n;
    if (n != gens.size()) fail("random state of another number of threads in " + fname);
    if (kind == "seed") {
        unsigned long s = 0;
        in >> s;
        for (size_t i = 0; i < n; i++) gens[i].seed(s + i);
    } else if (kind == "state") {
        for (size_t i = 0; i < n; i++) {
            int has = 0;
            uint64_t bits = 0;
            double g = 0;
            in >> gens[i] >> has >> bits;
            std::memcpy(&g, &bits, sizeof g);
            gens[i].*get(Gauss()) = g;
            gens[i].*get(HasGauss()) = (has != 0);
        }
    } else {
        fail("unknown random state '" + kind + "' in " + fname);
    }
    if (in.fail()) fail("malformed random state in " + fname);
}

inline void save(const std::string &fname) {
    std::ofstream out(fname.c_str());
    std::vector<brian::RandomGenerator> &gens = brian::_random_generators;
    out << "state " << gens.size() << "\n";
    for (size_t i = 0; i < gens.size(); i++) {
        double g = gens[i].*get(Gauss());
        uint64_t bits = 0;
        std::memcpy(&bits, &g, sizeof g);
        out << gens[i] << "\n" << int(gens[i].*get(HasGauss())) << " " << bits << "\n";
    }
    if (!out) fail("cannot write " + fname);
}
}  // namespace bioperturb_rng
#endif
