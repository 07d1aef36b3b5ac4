package ecr

import (
	"fmt"
	"strings"
)

// DefaultPauseVersion is the pause image tag used when none is configured (eks.pauseVersion).
// It only names the sources sandboxImage: eks falls back to (the region's EKS image, EKS
// Distro's and registry.k8s.io's copies); the image kept is the one containerd looks up, which
// containerd's own default moves on (registry.k8s.io/pause:3.10.1 in 2.2, 3.10.2 in 2.3 and 2.4:
// internal/cri/config/config.go DefaultSandboxImage). 3.10 stays the default: it is the tag
// sandbox-guard has named for those sources from the start, and 3.10.1 and 3.10.2 are upstream
// rebuilds of the same pause program that EKS's per-region repositories and EKS Distro were not
// verified to publish. README (Configuration) states the decision.
const DefaultPauseVersion = "3.10"

// defaultPause is where regions outside every known partition get the pause image from.
var defaultPause = pauseSource{account: "602401143452", region: "us-west-2", domain: "amazonaws.com"}

type pauseSource struct{ account, region, domain string }

// pauseAccounts maps a region to the account that serves /eks/pause in it, and the partition's
// domain. Never modified.
//
// Where the accounts come from: every entry, and the partition fallbacks below, are the
// region-to-account lookup the EKS AMI used for its pause image on Amazon Linux 2 (the AMI
// project's pause account script, removed with AL2 in 2026), as recorded in this project's
// reference notes on ECR (ecr.md; pause_test.go checks the table region by region). There is no
// API to ask: the accounts are those of EKS's own image registries, 602401143452 for most
// regions, an account of its own for each of the others and each other partition. Nothing is
// looked up at run time, so a region missing here falls back by its partition (pauseFallbacks)
// to an account and region that exist.
// An operator overrides the result without a new build (docs/configuration.md, "EKS pause
// image"): sandboxImage: <image> names the image outright, sandboxImageFallbacks replaces the
// sources eks adds, eks.region picks another region's entry, and `sandbox-guard eks-pause-image
// --region R` prints what this table gives.
var pauseAccounts = map[string]pauseSource{
	"af-south-1":      {account: "877085696533", domain: "amazonaws.com"},
	"ap-east-1":       {account: "800184023465", domain: "amazonaws.com"},
	"ap-east-2":       {account: "533267051163", domain: "amazonaws.com"},
	"ap-northeast-1":  {account: "602401143452", domain: "amazonaws.com"},
	"ap-northeast-2":  {account: "602401143452", domain: "amazonaws.com"},
	"ap-northeast-3":  {account: "602401143452", domain: "amazonaws.com"},
	"ap-south-1":      {account: "602401143452", domain: "amazonaws.com"},
	"ap-south-2":      {account: "900889452093", domain: "amazonaws.com"},
	"ap-southeast-1":  {account: "602401143452", domain: "amazonaws.com"},
	"ap-southeast-2":  {account: "602401143452", domain: "amazonaws.com"},
	"ap-southeast-3":  {account: "296578399912", domain: "amazonaws.com"},
	"ap-southeast-4":  {account: "491585149902", domain: "amazonaws.com"},
	"ap-southeast-5":  {account: "151610086707", domain: "amazonaws.com"},
	"ap-southeast-6":  {account: "333609536671", domain: "amazonaws.com"},
	"ap-southeast-7":  {account: "121268973566", domain: "amazonaws.com"},
	"ca-central-1":    {account: "602401143452", domain: "amazonaws.com"},
	"ca-west-1":       {account: "761377655185", domain: "amazonaws.com"},
	"cn-north-1":      {account: "918309763551", domain: "amazonaws.com.cn"},
	"cn-northwest-1":  {account: "961992271922", domain: "amazonaws.com.cn"},
	"eu-central-1":    {account: "602401143452", domain: "amazonaws.com"},
	"eu-central-2":    {account: "900612956339", domain: "amazonaws.com"},
	"eu-isoe-west-1":  {account: "249663109785", domain: "cloud.adc-e.uk"},
	"eu-north-1":      {account: "602401143452", domain: "amazonaws.com"},
	"eu-south-1":      {account: "590381155156", domain: "amazonaws.com"},
	"eu-south-2":      {account: "455263428931", domain: "amazonaws.com"},
	"eu-west-1":       {account: "602401143452", domain: "amazonaws.com"},
	"eu-west-2":       {account: "602401143452", domain: "amazonaws.com"},
	"eu-west-3":       {account: "602401143452", domain: "amazonaws.com"},
	"eusc-de-east-1":  {account: "877088126301", domain: "amazonaws.eu"},
	"il-central-1":    {account: "066635153087", domain: "amazonaws.com"},
	"me-central-1":    {account: "759879836304", domain: "amazonaws.com"},
	"me-south-1":      {account: "558608220178", domain: "amazonaws.com"},
	"mx-central-1":    {account: "730335286997", domain: "amazonaws.com"},
	"sa-east-1":       {account: "602401143452", domain: "amazonaws.com"},
	"us-east-1":       {account: "602401143452", domain: "amazonaws.com"},
	"us-east-2":       {account: "602401143452", domain: "amazonaws.com"},
	"us-gov-east-1":   {account: "151742754352", domain: "amazonaws.com"},
	"us-gov-west-1":   {account: "013241004608", domain: "amazonaws.com"},
	"us-iso-east-1":   {account: "725322719131", domain: "c2s.ic.gov"},
	"us-iso-west-1":   {account: "608367168043", domain: "c2s.ic.gov"},
	"us-isob-east-1":  {account: "187977181151", domain: "sc2s.sgov.gov"},
	"us-isob-west-1":  {account: "321162350305", domain: "sc2s.sgov.gov"},
	"us-isof-east-1":  {account: "171035529773", domain: "csp.hci.ic.gov"},
	"us-isof-south-1": {account: "676585237158", domain: "csp.hci.ic.gov"},
	"us-west-1":       {account: "602401143452", domain: "amazonaws.com"},
	"us-west-2":       {account: "602401143452", domain: "amazonaws.com"},
}

// pauseFallbacks says where a region missing from pauseAccounts gets the image, by the prefix
// of its name: the account and the region together, since an account only serves its own
// region. Prefixes end in "-", so "us-iso-" never matches us-isob-* or us-isof-*. Never modified.
var pauseFallbacks = []struct {
	prefix string
	src    pauseSource
}{
	{"us-gov-", pauseSource{account: "013241004608", region: "us-gov-west-1", domain: "amazonaws.com"}},
	{"cn-", pauseSource{account: "961992271922", region: "cn-northwest-1", domain: "amazonaws.com.cn"}},
	{"us-iso-", pauseSource{account: "725322719131", region: "us-iso-east-1", domain: "c2s.ic.gov"}},
	{"us-isob-", pauseSource{account: "187977181151", region: "us-isob-east-1", domain: "sc2s.sgov.gov"}},
	{"eu-isoe-", pauseSource{account: "249663109785", region: "eu-isoe-west-1", domain: "cloud.adc-e.uk"}},
	{"eusc-", pauseSource{account: "877088126301", region: "eusc-de-east-1", domain: "amazonaws.eu"}},
	{"us-isof-", pauseSource{account: "676585237158", region: "us-isof-south-1", domain: "csp.hci.ic.gov"}},
}

// PauseAccount returns the account that serves the EKS pause image for a node in region, the
// region to pull it from, and that region's domain. A known region pulls from itself; an
// unknown one pulls from its partition's fallback region (us-gov-*, cn-*, us-iso-*, us-isob-*,
// eu-isoe-*, eusc-*, us-isof-*), and anything else from 602401143452 in us-west-2.
func PauseAccount(region string) (account, effectiveRegion, domain string) {
	region = strings.ToLower(strings.TrimSpace(region))
	if src, ok := pauseAccounts[region]; ok {
		return src.account, region, src.domain
	}
	for _, f := range pauseFallbacks {
		if strings.HasPrefix(region, f.prefix) {
			return f.src.account, f.src.region, f.src.domain
		}
	}
	return defaultPause.account, defaultPause.region, defaultPause.domain
}

// PauseImage returns the EKS pause image reference for a node in region:
// <account>.dkr.ecr[-fips].<region>.<domain>/eks/pause:<version>, with DefaultPauseVersion for an
// empty version. PauseImage does not check that a FIPS host exists in that region (only some
// regions have one); ask for fips only where FIPS is required, and check that the host resolves.
func PauseImage(region string, fips bool, version string) string {
	account, region, domain := PauseAccount(region)
	ecrPart := "dkr.ecr"
	if fips {
		ecrPart = "dkr.ecr-fips"
	}
	return fmt.Sprintf("%s.%s.%s.%s/eks/pause:%s", account, ecrPart, region, domain, pauseVersion(version))
}

// PauseFallbacks returns public pause images that need no credentials, in the order to try
// them: EKS Distro's copy on ECR Public, then the upstream Kubernetes image. Both use the same
// tag as the EKS image (EKS Distro also publishes plain tags such as "3.10"), so a version that
// one of them lacks simply fails to pull there and the next source is tried.
func PauseFallbacks(version string) []string {
	v := pauseVersion(version)
	return []string{
		PublicHost + "/eks-distro/kubernetes/pause:" + v,
		"registry.k8s.io/pause:" + v,
	}
}

// PauseArchive is the pause image archive EKS AL2023 nodes carry (the image their containerd
// knows as localhost/kubernetes/pause); sandboxImage: eks falls back to it after every registry.
const PauseArchive = "/etc/eks/pause.tar"

func pauseVersion(v string) string {
	if v == "" {
		return DefaultPauseVersion
	}
	return v
}
