/* Wine 8 lacks ProcessPrng, which Go >= 1.22 imports from
 * bcryptprimitives.dll for crypto/rand and runtime randomness. This shim
 * forwards it to RtlGenRandom (advapi32 SystemFunction036), which Wine has.
 * Only for running the Windows build under Wine; real Windows has the DLL. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
