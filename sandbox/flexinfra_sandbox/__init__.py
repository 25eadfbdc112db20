"""The local test ground: a real OpenStack, a real kube-apiserver and namespace "VMs".

Nothing here is imported by the operator at run time; the CLI loads it lazily for
`flexinfra sandbox ...`.
"""
