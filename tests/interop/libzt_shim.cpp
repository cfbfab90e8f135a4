// No-op definitions for symbols that the libzt 1.8.4 manylinux wheel references but does not
// define (a packaging bug: libzt issue 180), plus one CPython 3.9 internal that Python 3.11 no
// longer exports. libzt never calls the netlink ones on our code paths (it manages no OS routes),
// and the time helper is only reached from the SWIG Python layer, which we do not use.
namespace ZeroTier {
class InetAddress;
class LinuxNetLink {
  public:
    LinuxNetLink();
    ~LinuxNetLink();
    void delRoute(const InetAddress &target, const InetAddress &via, const InetAddress &src,
                  const char *ifaceName);
};
LinuxNetLink::LinuxNetLink() {}
LinuxNetLink::~LinuxNetLink() {}
void LinuxNetLink::delRoute(const InetAddress &, const InetAddress &, const InetAddress &,
                            const char *) {}
}  // namespace ZeroTier

extern "C" int _PyTime_AsTimeval_noraise(long long, void *, int) { return -1; }
