package peers

// goldenNodes is a small cluster spelled out, so the golden graph does not
// depend on test helpers.
var goldenNodes = []Node{
	{Name: "akswin000000", OS: "windows", Zone: "eastus-1"},
	{Name: "akswin000001", OS: "windows", Zone: "eastus-2"},
	{Name: "akswin000002", OS: "windows", Zone: "eastus-3"},
	{Name: "akswin000003", OS: "windows", Zone: "eastus-1"},
	{Name: "aks-nodepool1-31415926-vmss000004", OS: "linux", Zone: "eastus-2"},
	{Name: "aks-nodepool1-31415926-vmss000005", OS: "linux", Zone: "eastus-3"},
	{Name: "aks-nodepool1-31415926-vmss000006", OS: "linux", Zone: "eastus-1"},
	{Name: "aks-nodepool1-31415926-vmss000007", OS: "linux", Zone: "eastus-2"},
	{Name: "aks-nodepool1-31415926-vmss000008", OS: "linux", Zone: "eastus-3"},
	{Name: "aks-nodepool1-31415926-vmss000009", OS: "linux", Zone: "eastus-1"},
	{Name: "aks-nodepool1-31415926-vmss00000a", OS: "linux", Zone: "eastus-2"},
	{Name: "aks-nodepool1-31415926-vmss00000b", OS: "linux", Zone: "eastus-3"},
	{Name: "virtual-node-aci-linux", OS: ""},
	{Name: "bsd-builder-0", OS: "freebsd"},
}

// golden12 is BuildGraph(goldenNodes, DefaultConfig()) as name/reason.
var golden12 = map[string][]string{
	"aks-nodepool1-31415926-vmss000004": {
		"aks-nodepool1-31415926-vmss000006/same",
		"aks-nodepool1-31415926-vmss000009/same",
		"aks-nodepool1-31415926-vmss00000b/same",
		"akswin000001/cross",
		"akswin000002/cross",
		"akswin000003/cross",
	},
	"aks-nodepool1-31415926-vmss000005": {
		"aks-nodepool1-31415926-vmss000004/same",
		"aks-nodepool1-31415926-vmss000006/same",
		"aks-nodepool1-31415926-vmss00000a/same",
		"akswin000000/cross",
		"akswin000001/cross",
		"akswin000003/cross",
	},
	"aks-nodepool1-31415926-vmss000006": {
		"aks-nodepool1-31415926-vmss000007/same",
		"aks-nodepool1-31415926-vmss000009/same",
		"aks-nodepool1-31415926-vmss00000b/same",
		"akswin000000/cross",
		"akswin000001/cross",
		"akswin000002/cross",
	},
	"aks-nodepool1-31415926-vmss000007": {
		"aks-nodepool1-31415926-vmss000005/same",
		"aks-nodepool1-31415926-vmss000008/same",
		"aks-nodepool1-31415926-vmss00000a/same",
		"akswin000000/cross",
		"akswin000001/cross",
		"akswin000002/cross",
	},
	"aks-nodepool1-31415926-vmss000008": {
		"aks-nodepool1-31415926-vmss000004/same",
		"aks-nodepool1-31415926-vmss000005/same",
		"aks-nodepool1-31415926-vmss00000a/same",
		"akswin000000/cross",
		"akswin000001/cross",
		"akswin000003/cross",
	},
	"aks-nodepool1-31415926-vmss000009": {
		"aks-nodepool1-31415926-vmss000005/same",
		"aks-nodepool1-31415926-vmss000007/same",
		"aks-nodepool1-31415926-vmss000008/same",
		"akswin000000/cross",
		"akswin000002/cross",
		"akswin000003/cross",
	},
	"aks-nodepool1-31415926-vmss00000a": {
		"aks-nodepool1-31415926-vmss000004/same",
		"aks-nodepool1-31415926-vmss000006/same",
		"aks-nodepool1-31415926-vmss00000b/same",
		"akswin000000/cross",
		"akswin000002/cross",
		"akswin000003/cross",
	},
	"aks-nodepool1-31415926-vmss00000b": {
		"aks-nodepool1-31415926-vmss000007/same",
		"aks-nodepool1-31415926-vmss000008/same",
		"aks-nodepool1-31415926-vmss000009/same",
		"akswin000000/cross",
		"akswin000001/cross",
		"akswin000002/cross",
	},
	"akswin000000": {
		"aks-nodepool1-31415926-vmss000005/cross",
		"aks-nodepool1-31415926-vmss000008/cross",
		"aks-nodepool1-31415926-vmss00000a/cross",
		"akswin000001/same",
		"akswin000002/same",
		"akswin000003/same",
	},
	"akswin000001": {
		"aks-nodepool1-31415926-vmss000004/cross",
		"aks-nodepool1-31415926-vmss000006/cross",
		"aks-nodepool1-31415926-vmss00000a/cross",
		"akswin000000/same",
		"akswin000002/same",
		"akswin000003/same",
	},
	"akswin000002": {
		"aks-nodepool1-31415926-vmss000004/cross",
		"aks-nodepool1-31415926-vmss000005/cross",
		"aks-nodepool1-31415926-vmss000007/cross",
		"akswin000000/same",
		"akswin000001/same",
		"akswin000003/same",
	},
	"akswin000003": {
		"aks-nodepool1-31415926-vmss000006/cross",
		"aks-nodepool1-31415926-vmss000008/cross",
		"aks-nodepool1-31415926-vmss000009/cross",
		"aks-nodepool1-31415926-vmss00000b/coverage",
		"akswin000000/same",
		"akswin000001/same",
		"akswin000002/same",
	},
}

const goldenHash = 0x37efb0b41cb15e30
