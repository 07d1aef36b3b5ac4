package harness

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

// pki is a test cluster's certificate authority and the key pairs it issued, as files in dir,
// laid out like kubeadm's /etc/kubernetes/pki: one CA signs the serving certificates (etcd, API
// server, kubelet) and the client certificates every component authenticates with.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  crypto.Signer
	CA     string // the CA certificate's file
}

// pair is a certificate and its key, as file paths.
type pair struct{ Cert, Key string }

func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "sandbox-guard-e2e-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signing the CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, caCert: cert, caKey: key, CA: filepath.Join(dir, "ca.crt")}
	if err := writePEM(p.CA, "CERTIFICATE", der); err != nil {
		return nil, err
	}
	return p, writeKey(filepath.Join(dir, "ca.key"), key)
}

// certSpec is what one issued certificate says: its subject (Kubernetes reads a client
// certificate's CN as the user and each O as a group) and, for servers, the names it serves.
type certSpec struct {
	file   string // base name of the .crt/.key files
	cn     string
	groups []string
	server bool
	client bool
	dns    []string
	ips    []net.IP
}

func (p *pki) issue(s certSpec) (pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: s.cn, Organization: s.groups},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		DNSNames:     s.dns,
		IPAddresses:  s.ips,
	}
	if s.server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if s.client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		return pair{}, fmt.Errorf("issuing %s: %w", s.file, err)
	}
	out := pair{Cert: filepath.Join(p.dir, s.file+".crt"), Key: filepath.Join(p.dir, s.file+".key")}
	if err := writePEM(out.Cert, "CERTIFICATE", der); err != nil {
		return pair{}, err
	}
	return out, writeKey(out.Key, key)
}

// serviceAccountKey writes the key pair the API server signs service account tokens with and
// the controller manager issues them with (kubeadm's sa.key and sa.pub).
func (p *pki) serviceAccountKey() (pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pair{}, err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return pair{}, err
	}
	out := pair{Cert: filepath.Join(p.dir, "sa.pub"), Key: filepath.Join(p.dir, "sa.key")}
	if err := writePEM(out.Cert, "PUBLIC KEY", pub); err != nil {
		return pair{}, err
	}
	return out, writeKey(out.Key, key)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der)
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
