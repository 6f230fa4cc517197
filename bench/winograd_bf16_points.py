"""bench/winograd_bf16_points.py - how far bf16 Winograd F(m, 3) is from exact, per choice of points,
against direct bf16 (inputs and weights rounded, products summed exactly), on post-ReLU random inputs
and random 3x3 filters over 256 channels. Prints max and RMS error relative to the largest output.
Why the bf16 kernels use F(2x2, 3x3) (bench/RESULTS.md, issue 14). /usr/bin/python3 (numpy).
"""
import numpy as np, itertools, sys
def bf16(x):
    x=np.asarray(x,np.float32); u=x.view(np.uint32).astype(np.uint64)
    u=(u+0x7fff+((u>>16)&1))>>16<<16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)
def mats(pts, m, r=3):
    n=m+r-1; assert len(pts)==n-1
    AT=np.zeros((m,n)); G=np.zeros((n,r))
    for j,p in enumerate(pts):
        f=np.prod([p-q for q in pts if q!=p])
        for i in range(m): AT[i,j]=p**i
        for k in range(r): G[j,k]=p**k/f
    AT[m-1,n-1]=1; G[n-1,r-1]=1
    # solve BT: sum_j AT[i,j] G[j,k] BT[j,t] = [t==i+k]
    rows=[];rhs=[]
    for i in range(m):
        for k in range(r):
            for t in range(n):
                e=np.zeros((n,n))
                for j in range(n): e[j,t]=AT[i,j]*G[j,k]
                rows.append(e.ravel()); rhs.append(1.0 if t==i+k else 0.0)
    BT,res,_,_=np.linalg.lstsq(np.array(rows),np.array(rhs),rcond=None)
    BT=BT.reshape(n,n)
    chk=np.abs(np.array(rows)@BT.ravel()-rhs).max(); assert chk<1e-9,chk
    return AT,G,BT
def trial(pts,m,C=256,OC=8,tiles=200,seed=0):
    rng=np.random.default_rng(seed); n=m+2
    AT,G,BT=mats(pts,m) if pts is not None else (None,None,None)
    d=np.maximum(rng.standard_normal((tiles,C,n,n)),0)   # post-ReLU inputs
    g=rng.standard_normal((OC,C,3,3))/np.sqrt(9*C)
    # exact correlation
    ref=np.zeros((tiles,OC,m,m))
    for ky in range(3):
        for kx in range(3):
            ref+=np.einsum('tcij,oc->toij',d[:,:,ky:ky+m,kx:kx+m],g[:,:,ky,kx])
    db,gb=bf16(d),bf16(g)
    direct=np.zeros_like(ref)
    for ky in range(3):
        for kx in range(3):
            direct+=np.einsum('tcij,oc->toij',db[:,:,ky:ky+m,kx:kx+m],gb[:,:,ky,kx])
    out={'direct':np.abs(direct-ref).max()/np.abs(ref).max()}
    if pts is not None:
        V=bf16(np.einsum('ai,tcij,bj->tcab',BT,d,BT))
        U=bf16(np.einsum('ak,ockl,bl->ocab',G,g,G))
        M=np.einsum('tcab,ocab->toab',V,U)
        Y=np.einsum('ia,toab,jb->toij',AT,M,AT)
        out['wino']=np.abs(Y-ref).max()/np.abs(ref).max()
        out['rms']=np.sqrt(((Y-ref)**2).mean())/np.sqrt((ref**2).mean())
    out['rms_direct']=np.sqrt(((direct-ref)**2).mean())/np.sqrt((ref**2).mean())
    return out
for name,pts,m in [('F2 0,1,-1',[0,1,-1],2),('F3 0,1,-1,1/2',[0,1,-1,0.5],3),('F3 0,1,-1,2',[0,1,-1,2],3),('F3 0,1,-1,-1/2',[0,1,-1,-0.5],3),
                   ('F4 0,1,-1,2,-2',[0,1,-1,2,-2],4),('F4 0,1,-1,1/2,-1/2',[0,1,-1,0.5,-0.5],4),('F4 0,1,-1,1/2,-2',[0,1,-1,0.5,-2],4),('F4 0,1,-1,2,1/2',[0,1,-1,2,0.5],4)]:
    print(name, {k:'%.2e'%v for k,v in trial(pts,m).items()})
