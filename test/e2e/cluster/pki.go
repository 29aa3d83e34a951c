package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PKI holds the paths of the certificates and keys a control plane uses. All
// keys are ECDSA P-256: quick to generate, and accepted by kube-apiserver for
// serving, client auth and service-account token signing (ES256).
type PKI struct {
	Dir        string
	CACert     string // cluster CA; signs the serving and client certificates
	CAKey      string
	ServerCert string // kube-apiserver serving certificate
	ServerKey  string
	AdminCert  string // client certificate in group system:masters
	AdminKey   string
	SAKey      string // service-account token signing key (private)
	SAPub      string // and its public half, for verification
	// KubeletClientCert is what kube-apiserver presents to kubelets (exec,
	// logs); kubelets trust the cluster CA's clients.
	KubeletClientCert string
	KubeletClientKey  string
}

// generatePKI writes a fresh CA, an apiserver serving certificate valid for
// serverIPs and the in-cluster names of the kubernetes Service, an admin
// client certificate and a service-account key pair into dir.
func generatePKI(dir string, serverIPs []net.IP) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &PKI{
		Dir:    dir,
		CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		ServerCert: filepath.Join(dir, "apiserver.crt"), ServerKey: filepath.Join(dir, "apiserver.key"),
		AdminCert: filepath.Join(dir, "admin.crt"), AdminKey: filepath.Join(dir, "admin.key"),
		SAKey: filepath.Join(dir, "sa.key"), SAPub: filepath.Join(dir, "sa.pub"),
	}
	now := time.Now().Add(-time.Hour) // tolerate clock skew between the steps
	caKey, err := newKey(p.CAKey)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "xosprobe-e2e-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caCert, err := writeCert(p.CACert, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}

	serverKey, err := newKey(p.ServerKey)
	if err != nil {
		return nil, err
	}
	_, err = writeCert(p.ServerCert, &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now,
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  serverIPs,
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc." + ClusterDomain},
	}, caCert, serverKey.Public(), caKey)
	if err != nil {
		return nil, err
	}

	adminKey, err := newKey(p.AdminKey)
	if err != nil {
		return nil, err
	}
	_, err = writeCert(p.AdminCert, &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "xosprobe-e2e-admin", Organization: []string{"system:masters"}},
		NotBefore:    now,
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, caCert, adminKey.Public(), caKey)
	if err != nil {
		return nil, err
	}

	saKey, err := newKey(p.SAKey)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.SAPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// newKey generates a P-256 key and writes it as a PKCS#8 PEM file (the
// format every component here reads).
func newKey(path string) (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	return k, nil
}

func writeCert(path string, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("certificate %s: %w", filepath.Base(path), err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}
